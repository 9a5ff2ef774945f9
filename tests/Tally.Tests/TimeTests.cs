using System.Net;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>Hold expiry, period renewal and grant expiry over HTTP, on a clock the test moves (never by waiting).</summary>
public sealed class TimeTests(ManualClockServerFixture server) : IClassFixture<ManualClockServerFixture>
{
    private Task<Reply> PostAsync(TestKey key, string path, object body) => server.CallAsync(HttpMethod.Post, path, key.Bearer, body);

    private Task<Reply> CreateOrganizationWithPeriodAsync(string organizationId, long credits, string period, long rolloverMax = 0) =>
        server.AdminAsync(HttpMethod.Put, $"/v1/admin/organizations/{organizationId}/subscription", new { plan = "daily", creditsPerPeriod = credits, period, rolloverMax });

    [Fact]
    public async Task AnExpiredHoldGivesItsCreditsBackAndCapturingOrReleasingItIs409HoldExpired()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var hold = (await PostAsync(organization.Key, "/v1/holds", new { credits = 40, ttlSeconds = 60, idempotencyKey = "stream" })).Expect(HttpStatusCode.Created);
        Assert.Equal(new DateTimeOffset(server.Clock.GetUtcNow().UtcDateTime.AddSeconds(60)).ToUnixTimeMilliseconds(),
            hold.Json!["expiresAt"]!.GetValue<DateTimeOffset>().ToUnixTimeMilliseconds());
        Assert.Equal(60, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());

        server.Clock.Advance(TimeSpan.FromSeconds(61));

        var balance = await server.BalanceAsync(organization.Key);
        Assert.Equal(0, balance["held"]!.GetValue<long>());
        Assert.Equal(100, balance["remaining"]!.GetValue<long>());
        (await PostAsync(organization.Key, $"/v1/holds/{hold.String("id")}/capture", new { credits = 40, idempotencyKey = "late-capture" }))
            .ExpectProblem(HttpStatusCode.Conflict, "hold_expired");
        (await PostAsync(organization.Key, $"/v1/holds/{hold.String("id")}/release", new { idempotencyKey = "late-release" }))
            .ExpectProblem(HttpStatusCode.Conflict, "hold_expired");
        Assert.Equal(0, (await server.SnapshotAsync(organization.Id)).Used);
        Assert.Equal("{\"Data\":{\"Total\":100,\"Used\":0,\"Remain\":100},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}",
            await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ANewPeriodIssuesAFreshAllowancePlusRolloverAndResetsUsed()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);
        (await CreateOrganizationWithPeriodAsync(organization.Id, credits: 100, period: "day", rolloverMax: 20)).Expect(HttpStatusCode.OK);
        (await server.ConsumeAsync(organization.Key, credits: 70)).Expect(HttpStatusCode.Created);
        Assert.Equal("{\"Data\":{\"Total\":100,\"Used\":70,\"Remain\":30},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}",
            await server.CreditsUsageTextAsync(organization.Key.SecretKey));

        server.Clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));

        // 20 of the 30 unused credits roll over (rolloverMax), beside the new allowance of 100.
        Assert.Equal("{\"Data\":{\"Total\":120,\"Used\":0,\"Remain\":120},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}",
            await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        var readBeforeTheRenewalIsWritten = await GrantSourcesAndCreditsAsync(organization);
        (await server.ConsumeAsync(organization.Key, credits: 5)).Expect(HttpStatusCode.Created);
        // In burn order (the rollover first) whether the renewal is only read or written too.
        Assert.Equal([("rollover", 20L), ("allowance", 100L)], readBeforeTheRenewalIsWritten);
        Assert.Equal([("rollover", 20L), ("allowance", 100L)], await GrantSourcesAndCreditsAsync(organization));
        Assert.Equal(115, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task RefundingLastPeriodsConsumptionDoesNotLowerThisPeriodsUsedNorRestoreExpiredCredits()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);
        (await CreateOrganizationWithPeriodAsync(organization.Id, credits: 100, period: "day")).Expect(HttpStatusCode.OK);
        var consumption = (await server.ConsumeAsync(organization.Key, credits: 10)).Expect(HttpStatusCode.Created).String("id");

        server.Clock.Advance(TimeSpan.FromDays(1) + TimeSpan.FromMinutes(1));
        var refund = (await PostAsync(organization.Key, $"/v1/consumptions/{consumption}/refunds", new { credits = 4, idempotencyKey = "late" }))
            .Expect(HttpStatusCode.Created);

        // The credits went back to yesterday's allowance, which has expired, so they are not spendable (SPEC §2 rule 5).
        Assert.Equal(100, refund.Long("remaining"));
        Assert.Equal("{\"Data\":{\"Total\":100,\"Used\":0,\"Remain\":100},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}",
            await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AnExpiredGrantIsNoLongerSpendable()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 0);
        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/grants", new
        {
            credits = 50, idempotencyKey = "promo", source = "promo", expiresAt = server.Clock.GetUtcNow().AddHours(1).ToString("O"),
        })).Expect(HttpStatusCode.Created);
        (await server.ConsumeAsync(organization.Key, credits: 10)).Expect(HttpStatusCode.Created);

        server.Clock.Advance(TimeSpan.FromHours(2));

        (await server.ConsumeAsync(organization.Key, credits: 1)).ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        var balance = await server.BalanceAsync(organization.Key);
        Assert.Equal(0, balance["remaining"]!.GetValue<long>());
        Assert.Empty(balance["grants"]!.AsArray());
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{organization.Id}\",\"hasCredits\":false,\"hasAssistant\":false}}",
            (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", organization.Key.Bearer)).Expect(HttpStatusCode.OK).Text);
        await server.AssertLedgerVerifiedAsync();
    }

    private async Task<List<(string Source, long Credits)>> GrantSourcesAndCreditsAsync(TestOrganization organization) =>
        (await server.BalanceAsync(organization.Key))["grants"]!.AsArray()
            .Select(grant => (grant!["source"]!.GetValue<string>(), grant!["credits"]!.GetValue<long>())).ToList();
}
