using System.Net;
using Microsoft.Data.Sqlite;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// SPEC §3.2 and §3.5 when the store cannot be reached: 500 in each API's envelope (the seeds' own 500 on
/// check-balance), never a stack trace, and /readyz says so. The outage is real: the data directory is
/// moved away, so new SQLite connections cannot open, and moved back afterwards.
/// </summary>
public sealed class StoreOutageTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    [Fact]
    public async Task WhenTheStoreCannotBeReadEveryApiAnswers500InItsOwnEnvelopeAndReadyzIs503()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        // A key never used yet is not cached, so authenticating it must read the store.
        var fresh = await server.CreateKeyAsync(organization.Id);
        var away = server.DataDirectory + ".away";

        SqliteConnection.ClearAllPools();
        Directory.Move(server.DataDirectory, away);
        try
        {
            var usage = (await server.CallAsync(HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", fresh.SecretKey)).Expect(HttpStatusCode.InternalServerError);
            Assert.Equal("{\"Data\":null,\"Version\":\"1.0.0\",\"Success\":false,\"Code\":500,\"Message\":\"Internal server error\"}", usage.Text);
            var check = (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", fresh.Bearer)).Expect(HttpStatusCode.InternalServerError);
            Assert.Equal("{\"success\":false,\"message\":\"Internal server error\"}", check.Text);
            var native = (await server.CallAsync(HttpMethod.Get, "/v1/balance", fresh.Bearer)).ExpectProblem(HttpStatusCode.InternalServerError, "internal");
            Assert.DoesNotContain("Exception", native.Text);
            Assert.DoesNotContain(" at ", native.Text);
            Assert.True(native.Headers.Contains("X-Request-Id"), "a 500 still carries the request id that finds its log lines");
            (await server.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.ServiceUnavailable);
        }
        finally
        {
            SqliteConnection.ClearAllPools();
            Directory.Move(away, server.DataDirectory);
        }

        (await server.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{organization.Id}\",\"hasCredits\":true,\"hasAssistant\":false}}",
            (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", fresh.Bearer)).Expect(HttpStatusCode.OK).Text);
        (await server.ConsumeAsync(fresh)).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }
}
