using System.Net;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>SPEC §3.1: key forms, scopes, revocation, the admin credential, and organizations kept apart.</summary>
public sealed class AuthenticationTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    /// <summary>The three accepted forms of an organization key.</summary>
    public static TheoryData<string> KeyForms => new() { "Bearer pk:sk", "Bearer sk", "sk" };

    private static string Authorization(TestKey key, string form) => form switch
    {
        "Bearer pk:sk" => key.Bearer,
        "Bearer sk" => key.BearerSecret,
        _ => key.SecretKey,
    };

    [Theory]
    [MemberData(nameof(KeyForms))]
    public async Task EveryAcceptedKeyFormWorksOnTheNativeEndpoints(string form)
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var authorization = Authorization(organization.Key, form);

        (await server.CallAsync(HttpMethod.Get, "/v1/balance", authorization)).Expect(HttpStatusCode.OK);
        var consumption = (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", authorization, new { credits = 2, idempotencyKey = "c" })).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Post, $"/v1/consumptions/{consumption.String("id")}/refunds", authorization, new { credits = 1, idempotencyKey = "r" })).Expect(HttpStatusCode.Created);
        var captured = (await server.CallAsync(HttpMethod.Post, "/v1/holds", authorization, new { credits = 3, idempotencyKey = "h1" })).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Post, $"/v1/holds/{captured.String("id")}/capture", authorization, new { credits = 2, idempotencyKey = "c1" })).Expect(HttpStatusCode.Created);
        var released = (await server.CallAsync(HttpMethod.Post, "/v1/holds", authorization, new { credits = 3, idempotencyKey = "h2" })).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Post, $"/v1/holds/{released.String("id")}/release", authorization, new { idempotencyKey = "r1" })).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Get, "/v1/usage", authorization)).Expect(HttpStatusCode.OK);
        (await server.CallAsync(HttpMethod.Get, "/v1/ledger", authorization)).Expect(HttpStatusCode.OK);

        Assert.Equal(3, (await server.BalanceAsync(organization.Key))["used"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Theory]
    [MemberData(nameof(KeyForms))]
    public async Task EveryAcceptedKeyFormWorksOnTheCompatibilityEndpoints(string form)
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await server.ConsumeAsync(organization.Key, credits: 1)).Expect(HttpStatusCode.Created);
        var authorization = Authorization(organization.Key, form);
        const string usage = "{\"Data\":{\"Total\":100,\"Used\":1,\"Remain\":99},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}";

        Assert.Equal(usage, (await server.CallAsync(HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", authorization)).Expect(HttpStatusCode.OK).Text);
        Assert.Equal(usage, (await server.CallAsync(HttpMethod.Post, "/chat/Chatbot/GetMessageCreditsUsage", authorization, "{}")).Expect(HttpStatusCode.OK).Text);
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{organization.Id}\",\"hasCredits\":true,\"hasAssistant\":false}}",
            (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", authorization)).Expect(HttpStatusCode.OK).Text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task EveryNativeEndpointWithoutACredentialIs401Unauthorized()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var consumption = (await server.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", organization.Key.Bearer, new { credits = 1, idempotencyKey = "h" })).Expect(HttpStatusCode.Created).String("id");
        var before = await server.SnapshotAsync(organization.Id);

        foreach (var (method, path) in NativeEndpoints(consumption, hold))
        {
            foreach (var authorization in new[] { null, "", "Bearer sk_" + new string('0', 40) })
            {
                var reply = await server.CallAsync(method, path, authorization, method == HttpMethod.Post ? new { credits = 1, idempotencyKey = "x" } : null);
                Assert.True(reply.Status == HttpStatusCode.Unauthorized, $"{method} {path} with '{authorization}': {(int)reply.Status} {reply.Text}");
                reply.ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
            }
        }

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    private static (HttpMethod, string)[] NativeEndpoints(string consumptionId, string holdId) =>
    [
        (HttpMethod.Get, "/v1/balance"), (HttpMethod.Get, "/v1/usage"), (HttpMethod.Get, "/v1/ledger"),
        (HttpMethod.Post, "/v1/consumptions"), (HttpMethod.Post, $"/v1/consumptions/{consumptionId}/refunds"),
        (HttpMethod.Post, "/v1/holds"), (HttpMethod.Post, $"/v1/holds/{holdId}/capture"), (HttpMethod.Post, $"/v1/holds/{holdId}/release"),
    ];

    [Fact]
    public async Task AKeyWithoutUsageWriteCannotSpendAndIsAnswered403Forbidden()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var readOnly = await server.CreateKeyAsync(organization.Id, "balance:read");
        var consumption = (await server.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", organization.Key.Bearer, new { credits = 1, idempotencyKey = "h" })).Expect(HttpStatusCode.Created).String("id");
        var before = await server.SnapshotAsync(organization.Id);

        foreach (var path in new[] { "/v1/consumptions", $"/v1/consumptions/{consumption}/refunds", "/v1/holds", $"/v1/holds/{hold}/capture", $"/v1/holds/{hold}/release" })
        {
            (await server.CallAsync(HttpMethod.Post, path, readOnly.Bearer, new { credits = 1, idempotencyKey = "x" })).ExpectProblem(HttpStatusCode.Forbidden, "forbidden");
        }
        (await server.CallAsync(HttpMethod.Get, "/v1/balance", readOnly.Bearer)).Expect(HttpStatusCode.OK);
        (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", readOnly.Bearer)).Expect(HttpStatusCode.OK);

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AKeyWithoutBalanceReadCannotReadAndIsAnswered403Forbidden()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var writeOnly = await server.CreateKeyAsync(organization.Id, "usage:write");

        foreach (var path in new[] { "/v1/balance", "/v1/usage", "/v1/ledger" })
        {
            (await server.CallAsync(HttpMethod.Get, path, writeOnly.Bearer)).ExpectProblem(HttpStatusCode.Forbidden, "forbidden");
        }
        var usage = await server.CallAsync(HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", writeOnly.SecretKey);
        Assert.Equal("{\"Data\":null,\"Version\":\"1.0.0\",\"Success\":false,\"Code\":403,\"Message\":\"This key lacks the balance:read scope.\"}", usage.Expect(HttpStatusCode.Forbidden).Text);
        var check = await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", writeOnly.Bearer);
        Assert.Equal("{\"success\":false,\"message\":\"This key lacks the balance:read scope\"}", check.Expect(HttpStatusCode.Forbidden).Text);
        (await server.ConsumeAsync(writeOnly)).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ARevokedKeyIsRefusedAtOnceEverywhereWhileTheOrganizationsOtherKeysStillWork()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var doomed = await server.CreateKeyAsync(organization.Id);
        // Warm every path's view of the key, so a cached copy would be what answers after the revocation.
        (await server.ConsumeAsync(doomed)).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", doomed.SecretKey)).Expect(HttpStatusCode.OK);
        (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", doomed.Bearer)).Expect(HttpStatusCode.OK);

        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{organization.Id}/keys/{doomed.Id}")).Expect(HttpStatusCode.OK);
        var before = await server.SnapshotAsync(organization.Id);

        foreach (var authorization in new[] { doomed.Bearer, doomed.BearerSecret, doomed.SecretKey })
        {
            (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", authorization, new { idempotencyKey = Guid.NewGuid().ToString() }))
                .ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
            (await server.CallAsync(HttpMethod.Get, "/v1/balance", authorization)).ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
            Assert.Equal("{\"Data\":null,\"Version\":\"1.0.0\",\"Success\":false,\"Code\":401,\"Message\":\"The secret key is not valid.\"}",
                (await server.CallAsync(HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", authorization)).Expect(HttpStatusCode.Unauthorized).Text);
            Assert.Equal("{\"success\":false,\"message\":\"Organization ID not found in request\"}",
                (await server.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", authorization)).Expect(HttpStatusCode.Unauthorized).Text);
        }

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        (await server.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task APublicKeyThatDoesNotMatchTheSecretIs401()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var second = await server.CreateKeyAsync(organization.Id);

        foreach (var authorization in new[] { $"Bearer {second.PublicKey}:{organization.Key.SecretKey}", $"Bearer pk_0000000000000000:{organization.Key.SecretKey}" })
        {
            (await server.CallAsync(HttpMethod.Get, "/v1/balance", authorization)).ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task OneOrganizationsKeyCannotTouchAnotherOrganizationsConsumptionsOrHoldsAndGets404()
    {
        var owner = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var intruder = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var consumption = (await server.ConsumeAsync(owner.Key, credits: 10)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", owner.Key.Bearer, new { credits = 20, idempotencyKey = "h" })).Expect(HttpStatusCode.Created).String("id");
        var ownerBefore = await server.SnapshotAsync(owner.Id);
        var intruderBefore = await server.SnapshotAsync(intruder.Id);

        (await server.CallAsync(HttpMethod.Post, $"/v1/consumptions/{consumption}/refunds", intruder.Key.Bearer, new { idempotencyKey = "steal" }))
            .ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await server.CallAsync(HttpMethod.Post, $"/v1/holds/{hold}/capture", intruder.Key.Bearer, new { credits = 20, idempotencyKey = "steal-2" }))
            .ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await server.CallAsync(HttpMethod.Post, $"/v1/holds/{hold}/release", intruder.Key.Bearer, new { idempotencyKey = "steal-3" }))
            .ExpectProblem(HttpStatusCode.NotFound, "not_found");

        Assert.Equal(ownerBefore, await server.SnapshotAsync(owner.Id));
        Assert.Equal(intruderBefore, await server.SnapshotAsync(intruder.Id));
        Assert.DoesNotContain(consumption, (await server.CallAsync(HttpMethod.Get, "/v1/ledger", intruder.Key.Bearer)).Expect(HttpStatusCode.OK).Text);
        // The owner's hold and consumption are untouched and still usable by the owner.
        (await server.CallAsync(HttpMethod.Post, $"/v1/holds/{hold}/release", owner.Key.Bearer, new { idempotencyKey = "r" })).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Post, $"/v1/consumptions/{consumption}/refunds", owner.Key.Bearer, new { idempotencyKey = "r2" })).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheAdminApiRefusesOrganizationKeysAndAnythingButTheOperatorKeyWith401()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var refused = new[]
        {
            null, "", organization.Key.Bearer, organization.Key.BearerSecret, organization.Key.SecretKey,
            TallyServerFixture.OperatorKey, "Bearer " + TallyServerFixture.OperatorKey + "x", "Bearer", "Basic " + TallyServerFixture.OperatorKey,
        };
        var endpoints = new (HttpMethod, string)[]
        {
            (HttpMethod.Get, "/v1/admin/verify"), (HttpMethod.Get, "/v1/admin/organizations"), (HttpMethod.Post, "/v1/admin/organizations"),
            (HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}"), (HttpMethod.Delete, $"/v1/admin/organizations/{organization.Id}"),
            (HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/keys"), (HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/grants"),
            (HttpMethod.Put, $"/v1/admin/organizations/{organization.Id}/subscription"), (HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}/balance"),
        };
        var before = await server.SnapshotAsync(organization.Id);

        foreach (var (method, path) in endpoints)
        {
            foreach (var authorization in refused)
            {
                var reply = await server.CallAsync(method, path, authorization, method == HttpMethod.Get || method == HttpMethod.Delete ? null : new { name = "x", credits = 1000, idempotencyKey = "x", plan = "x", creditsPerPeriod = 1000, period = "day" });
                Assert.True(reply.Status == HttpStatusCode.Unauthorized, $"{method} {path} with '{authorization}': {(int)reply.Status} {reply.Text}");
                reply.ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
            }
        }

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        (await server.CallAsync(HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}", "bearer " + TallyServerFixture.OperatorKey)).Expect(HttpStatusCode.OK);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheOperatorKeyIsNotAnOrganizationKey()
    {
        (await server.CallAsync(HttpMethod.Get, "/v1/balance", TallyServerFixture.Admin)).ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
        (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", TallyServerFixture.Admin, new { idempotencyKey = "x" })).ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
        await server.AssertLedgerVerifiedAsync();
    }
}
