using System.Net;
using System.Text;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// SPEC §3.2: the three published documents in seeds/ answered byte for byte. Bodies are compared as raw
/// strings, so a renamed field, a changed case, a reordered property or an extra field all fail.
/// </summary>
public sealed class CompatibilityEndpointTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    private const string CreditsUsagePath = "/chat/Chatbot/GetMessageCreditsUsage";
    private const string CheckBalancePath = "/api/v1/agents/check-balance";

    private static string UsageEnvelope(long total, long used, long remain) =>
        $"{{\"Data\":{{\"Total\":{total},\"Used\":{used},\"Remain\":{remain}}},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}}";

    private static string UsageError(int code, string message) =>
        $"{{\"Data\":null,\"Version\":\"1.0.0\",\"Success\":false,\"Code\":{code},\"Message\":\"{message}\"}}";

    private async Task<(HttpStatusCode Status, string? ContentType, string Text)> SendAsync(
        HttpMethod method, string path, string? authorization, string? body = null, string? contentType = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(body));
            if (contentType is not null) request.Content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        }
        using var response = await server.Client.SendAsync(request);
        return (response.StatusCode, response.Content.Headers.ContentType?.MediaType, await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// The requests the seeds' own examples send: curl's `-X GET -d '{}'` (a form content type on a GET),
    /// fetch's GET with a text body, Python's `requests.get(json={})`, NewOaks' POST with `{}`, and a bare GET.
    /// </summary>
    public static TheoryData<string, string?, string?> SeedRequests => new()
    {
        { "GET", "{}", "application/x-www-form-urlencoded" },
        { "GET", "{}", "text/plain;charset=UTF-8" },
        { "GET", "{}", "application/json" },
        { "GET", null, null },
        { "POST", "{}", "application/json" },
        { "POST", "", "application/json" },
        { "POST", null, null },
    };

    [Theory]
    [MemberData(nameof(SeedRequests))]
    public async Task TheSeedsExampleRequestsAreAnsweredWithTheExactDocumentedEnvelope(string method, string? body, string? contentType)
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await server.ConsumeAsync(organization.Key, credits: 7)).Expect(HttpStatusCode.Created);

        var (status, mediaType, text) = await SendAsync(new HttpMethod(method), CreditsUsagePath, organization.Key.SecretKey, body, contentType);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", mediaType);
        Assert.Equal(UsageEnvelope(total: 100, used: 7, remain: 93), text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AnUnlimitedSubscriptionReportsTotalAndRemainAsMinusOneAndCountsUsedAsInTheSeed()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: null);
        (await server.ConsumeAsync(organization.Key, credits: 200)).Expect(HttpStatusCode.Created);
        (await server.ConsumeAsync(organization.Key, credits: 43)).Expect(HttpStatusCode.Created);

        // seeds/000 and seeds/001 show exactly this response.
        Assert.Equal(UsageEnvelope(total: -1, used: 243, remain: -1), await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        var (status, _, posted) = await SendAsync(HttpMethod.Post, CreditsUsagePath, organization.Key.SecretKey, "{}", "application/json");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(UsageEnvelope(total: -1, used: 243, remain: -1), posted);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TotalIsUsedPlusRemainAfterConsumptionsARefundAndATopUp()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 50);
        var consumption = (await server.ConsumeAsync(organization.Key, credits: 20)).Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Post, $"/v1/consumptions/{consumption.String("id")}/refunds", organization.Key.Bearer,
            new { credits = 5, idempotencyKey = "refund-1" })).Expect(HttpStatusCode.Created);
        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/grants",
            new { credits = 30, idempotencyKey = "topup-1" })).Expect(HttpStatusCode.Created);

        // Used 20 - 5 = 15; remaining 50 - 15 + 30 = 65; Total = Used + Remain (SPEC §2 rule 9).
        Assert.Equal(UsageEnvelope(total: 80, used: 15, remain: 65), await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CreditsUsageWithoutAnActiveSubscriptionReportsNothingToSpendEvenWithTopUps()
    {
        var never = await server.CreateOrganizationAsync(subscribe: false);
        var cancelled = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.ConsumeAsync(cancelled.Key, credits: 4)).Expect(HttpStatusCode.Created);
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{cancelled.Id}/subscription")).Expect(HttpStatusCode.OK);
        foreach (var organization in new[] { never, cancelled })
        {
            (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/grants",
                new { credits = 10, idempotencyKey = "topup-" + organization.Id })).Expect(HttpStatusCode.Created);
            // Every consumption is refused (rule 4), so the usage shows nothing to spend, as check-balance says hasCredits false.
            (await server.ConsumeAsync(organization.Key)).ExpectProblem(HttpStatusCode.PaymentRequired, "no_active_subscription");
            Assert.Equal(UsageEnvelope(total: 0, used: 0, remain: 0), await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        }
    }

    [Fact]
    public async Task CreditsUsageErrorsKeepTheEnvelopeWithNullDataAndTheStatusAsCode()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var readless = await server.CreateKeyAsync(organization.Id, "usage:write");

        var cases = new (string? Authorization, int Status, string Message)[]
        {
            (null, 401, "The Authorization header with your secret key is required."),
            ("", 401, "The Authorization header with your secret key is required."),
            ("sk_" + new string('x', 40), 401, "The secret key is not valid."),
            ("Bearer sk_" + new string('x', 40), 401, "The secret key is not valid."),
            ("not a key", 401, "The secret key is not valid."),
            (readless.SecretKey, 403, "This key lacks the balance:read scope."),
        };
        foreach (var (authorization, code, message) in cases)
        {
            foreach (var method in new[] { HttpMethod.Get, HttpMethod.Post })
            {
                var (status, mediaType, text) = await SendAsync(method, CreditsUsagePath, authorization, "{}", "application/json");
                Assert.True((int)status == code, $"{method} with Authorization '{authorization}': expected {code}, got {(int)status} {text}");
                Assert.Equal("application/json", mediaType);
                Assert.Equal(UsageError(code, message), text);
            }
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CreditsUsageOfADisabledOrDeletedOrganizationIs404InTheEnvelope()
    {
        var disabled = await server.CreateOrganizationAsync();
        (await server.AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{disabled.Id}", new { status = "disabled" })).Expect(HttpStatusCode.OK);
        var deleted = await server.CreateOrganizationAsync();
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{deleted.Id}")).Expect(HttpStatusCode.NoContent);

        foreach (var organization in new[] { disabled, deleted })
        {
            var (status, _, text) = await SendAsync(HttpMethod.Get, CreditsUsagePath, organization.Key.SecretKey);
            Assert.Equal(HttpStatusCode.NotFound, status);
            Assert.Equal(UsageError(404, "The organization was not found or is disabled."), text);
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CheckBalanceAnswersHasCreditsAndHasAssistantTrueExactlyAsPublished()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 5);
        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/assistants", new { name = "Support bot" }))
            .Expect(HttpStatusCode.Created);

        // seeds/002's own example sends Content-Type: application/json on a GET without a body.
        var (status, mediaType, text) = await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer, null, null);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json", mediaType);
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{organization.Id}\",\"hasCredits\":true,\"hasAssistant\":true}}", text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CheckBalanceAnswersHasCreditsFalseOnceEveryCreditIsSpentAndHasAssistantFalseWithoutOne()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 3);
        (await server.ConsumeAsync(organization.Key, credits: 3)).Expect(HttpStatusCode.Created);

        var (status, _, text) = await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer);

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{organization.Id}\",\"hasCredits\":false,\"hasAssistant\":false}}", text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CheckBalanceCountsAnUnlimitedSubscriptionAsHavingCreditsAndAZeroAllowanceAsNot()
    {
        var unlimited = await server.CreateOrganizationAsync(creditsPerPeriod: null);
        var prepaid = await server.CreateOrganizationAsync(creditsPerPeriod: 0);

        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{unlimited.Id}\",\"hasCredits\":true,\"hasAssistant\":false}}",
            (await SendAsync(HttpMethod.Get, CheckBalancePath, unlimited.Key.Bearer)).Text);
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{prepaid.Id}\",\"hasCredits\":false,\"hasAssistant\":false}}",
            (await SendAsync(HttpMethod.Get, CheckBalancePath, prepaid.Key.Bearer)).Text);

        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{prepaid.Id}/grants", new { credits = 1, idempotencyKey = "first" }))
            .Expect(HttpStatusCode.Created);
        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{prepaid.Id}\",\"hasCredits\":true,\"hasAssistant\":false}}",
            (await SendAsync(HttpMethod.Get, CheckBalancePath, prepaid.Key.Bearer)).Text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CheckBalanceWithoutAnActiveSubscriptionIs200WithSuccessFalseExactlyAsPublished()
    {
        const string expected = "{\"success\":false,\"hasCredits\":false,\"hasAssistant\":false,\"message\":\"No active subscription found for this organization\"}";
        var never = await server.CreateOrganizationAsync(subscribe: false);
        var cancelled = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{cancelled.Id}/assistants", new { name = "bot" })).Expect(HttpStatusCode.Created);
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{cancelled.Id}/subscription")).Expect(HttpStatusCode.OK);

        foreach (var organization in new[] { never, cancelled })
        {
            var (status, _, text) = await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer);
            Assert.Equal(HttpStatusCode.OK, status);
            Assert.Equal(expected, text);
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CheckBalanceWithAMissingOrUnknownKeyIs401ExactlyAsPublished()
    {
        const string expected = "{\"success\":false,\"message\":\"Organization ID not found in request\"}";
        var organization = await server.CreateOrganizationAsync();
        var revoked = await server.CreateKeyAsync(organization.Id);
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{organization.Id}/keys/{revoked.Id}")).Expect(HttpStatusCode.OK);

        foreach (var authorization in new[]
                 {
                     null, "", "Bearer", "Bearer pk_1234567890abcdef:sk_abcdef1234567890", $"Bearer {organization.Key.PublicKey}:sk_wrong",
                     $"Bearer pk_other:{organization.Key.SecretKey}", revoked.Bearer, TallyServerFixture.Admin,
                 })
        {
            var (status, mediaType, text) = await SendAsync(HttpMethod.Get, CheckBalancePath, authorization);
            Assert.True(status == HttpStatusCode.Unauthorized, $"Authorization '{authorization}': expected 401, got {(int)status} {text}");
            Assert.Equal("application/json", mediaType);
            Assert.Equal(expected, text);
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CheckBalanceOfADisabledOrDeletedOrganizationIs404ExactlyAsPublished()
    {
        const string expected = "{\"success\":false,\"message\":\"Agent not found or unauthorized\"}";
        var disabled = await server.CreateOrganizationAsync();
        (await server.AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{disabled.Id}", new { status = "disabled" })).Expect(HttpStatusCode.OK);
        var deleted = await server.CreateOrganizationAsync();
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{deleted.Id}")).Expect(HttpStatusCode.NoContent);

        foreach (var organization in new[] { disabled, deleted })
        {
            var (status, _, text) = await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer);
            Assert.Equal(HttpStatusCode.NotFound, status);
            Assert.Equal(expected, text);
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ADisabledOrganizationIsAnsweredAgainOnceReEnabled()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{organization.Id}", new { status = "disabled" })).Expect(HttpStatusCode.OK);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer)).Status);

        (await server.AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{organization.Id}", new { status = "active" })).Expect(HttpStatusCode.OK);

        Assert.Equal($"{{\"success\":true,\"organizationId\":\"{organization.Id}\",\"hasCredits\":true,\"hasAssistant\":false}}",
            (await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer)).Text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task NeitherCompatibilityEndpointConsumesCredits()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.ConsumeAsync(organization.Key, credits: 3)).Expect(HttpStatusCode.Created);
        var before = await server.SnapshotAsync(organization.Id);

        for (var round = 0; round < 5; round++)
        {
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, CreditsUsagePath, organization.Key.SecretKey, "{}", "application/x-www-form-urlencoded")).Status);
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Post, CreditsUsagePath, organization.Key.SecretKey, "{}", "application/json")).Status);
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, CheckBalancePath, organization.Key.Bearer)).Status);
        }

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        Assert.Equal(UsageEnvelope(total: 10, used: 3, remain: 7), await server.CreditsUsageTextAsync(organization.Key.SecretKey));
        await server.AssertLedgerVerifiedAsync();
    }
}
