using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>SPEC §2 rule 1 over real HTTP: many clients at once never overdraw, and every attempt is answered.</summary>
public sealed class ConcurrencyTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    private const int Clients = 64;
    private const int Credits = 500;
    private const int Attempts = 1_000;

    [Fact]
    public async Task SixtyFourClientsSpendingOneCreditAThousandTimesGetExactlyFiveHundred201sAndTheRest402()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: Credits);
        var outcomes = new ConcurrentBag<(HttpStatusCode Status, string? Code, bool Replayed)>();
        var next = -1;

        async Task RunClientAsync()
        {
            // Each client has its own connection pool, as separate backend processes would.
            using var client = server.CreateClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 });
            client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", organization.Key.Bearer);
            int attempt;
            while ((attempt = Interlocked.Increment(ref next)) < Attempts)
            {
                using var response = await client.PostAsJsonAsync("/v1/consumptions", new { credits = 1, idempotencyKey = $"message-{attempt}" });
                var body = JsonNode.Parse(await response.Content.ReadAsStringAsync());
                outcomes.Add((response.StatusCode, body?["code"]?.GetValue<string>(), response.Headers.Contains("Idempotent-Replayed")));
            }
        }

        await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => Task.Run(RunClientAsync)));

        Assert.Equal(Attempts, outcomes.Count);
        var byStatus = outcomes.GroupBy(outcome => (outcome.Status, outcome.Code)).ToDictionary(group => group.Key, group => group.Count());
        var summary = string.Join(", ", byStatus.Select(pair => $"{(int)pair.Key.Status} {pair.Key.Code}: {pair.Value}"));
        Assert.True(byStatus.GetValueOrDefault((HttpStatusCode.Created, null)) == Credits, "expected exactly 500 created; got " + summary);
        Assert.True(byStatus.GetValueOrDefault((HttpStatusCode.PaymentRequired, "insufficient_credits")) == Attempts - Credits, "expected 500 refused; got " + summary);
        Assert.DoesNotContain(outcomes, outcome => outcome.Replayed);

        Assert.Equal("{\"Data\":{\"Total\":500,\"Used\":500,\"Remain\":0},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}",
            await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        var snapshot = await server.SnapshotAsync(organization.Id);
        Assert.Equal(0, snapshot.Remaining);
        Assert.Equal(Credits, snapshot.Used);
        Assert.Equal(1 + Credits, snapshot.LedgerEntries); // the allowance grant and one entry per accepted consumption
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ConcurrentRetriesOfOneIdempotencyKeyChargeOnceAndAllAnswerTheSameBody()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var bodies = new ConcurrentBag<(HttpStatusCode Status, string Text)>();

        async Task RetryAsync()
        {
            using var client = server.CreateClient();
            client.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", organization.Key.Bearer);
            for (var attempt = 0; attempt < 4; attempt++)
            {
                using var response = await client.PostAsJsonAsync("/v1/consumptions", new { credits = 7, idempotencyKey = "the-one-message" });
                bodies.Add((response.StatusCode, await response.Content.ReadAsStringAsync()));
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(RetryAsync)));

        Assert.Equal(1, bodies.Count(reply => reply.Status == HttpStatusCode.Created));
        Assert.Equal(63, bodies.Count(reply => reply.Status == HttpStatusCode.OK));
        Assert.Single(bodies.Select(reply => reply.Text).Distinct());
        Assert.Equal(7, (await server.SnapshotAsync(organization.Id)).Used);
        await server.AssertLedgerVerifiedAsync();
    }
}
