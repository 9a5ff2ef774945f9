using System.Net;
using Tally.Ledger.Model;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>SPEC §3.3: the native API of an organization's key, success and failure paths of every endpoint.</summary>
public sealed class NativeApiTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    private Task<Reply> PostAsync(TestKey key, string path, object body, Dictionary<string, string>? headers = null) =>
        server.CallAsync(HttpMethod.Post, path, key.Bearer, body, headers);

    private Task<Reply> GetAsync(TestKey key, string path) => server.CallAsync(HttpMethod.Get, path, key.Bearer);

    [Fact]
    public async Task TheBalanceShowsTheSubscriptionTheTotalsAndTheGrants()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await server.ConsumeAsync(organization.Key, credits: 10)).Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, "/v1/holds", new { credits = 5, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created);

        var balance = (await GetAsync(organization.Key, "/v1/balance")).Expect(HttpStatusCode.OK);

        Assert.Equal("application/json", balance.ContentType);
        Assert.Equal(organization.Id, balance.String("organizationId"));
        var subscription = balance.Json!["subscription"]!;
        Assert.Equal("active", subscription["status"]!.GetValue<string>());
        Assert.Equal("pro", subscription["plan"]!.GetValue<string>());
        Assert.Equal("month", subscription["period"]!.GetValue<string>());
        Assert.False(subscription["unlimited"]!.GetValue<bool>());
        Assert.True(subscription["periodStart"]!.GetValue<DateTimeOffset>() < subscription["periodEnd"]!.GetValue<DateTimeOffset>());
        Assert.Equal(95, balance.Long("total"));
        Assert.Equal(10, balance.Long("used"));
        Assert.Equal(85, balance.Long("remaining"));
        Assert.Equal(5, balance.Long("held"));
        var grant = Assert.Single(balance.Json!["grants"]!.AsArray())!;
        Assert.Equal("allowance", grant["source"]!.GetValue<string>());
        Assert.Equal(100, grant["credits"]!.GetValue<long>());
        Assert.Equal(85, grant["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AConsumptionIsCreatedWith201AndLowersTheRemainingBalance()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        var receipt = (await PostAsync(organization.Key, "/v1/consumptions", new
        {
            credits = 3, idempotencyKey = "message-1", assistantId = "assistant-7", identifier = "user-42",
            metadata = new Dictionary<string, string> { ["conversation"] = "c-1", ["model"] = "small" },
        })).Expect(HttpStatusCode.Created);

        Assert.False(receipt.IsReplay);
        Assert.False(string.IsNullOrEmpty(receipt.String("id")));
        Assert.Equal(3, receipt.Long("credits"));
        Assert.Equal(97, receipt.Long("remaining"));
        Assert.Equal("assistant-7", receipt.String("assistantId"));
        Assert.Equal("user-42", receipt.String("identifier"));
        Assert.Equal(97, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CreditsAreReadByTheirValueHoweverTheJsonNumberIsWritten()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        var decimalPoint = (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", organization.Key.Bearer, """{"credits":2.0,"idempotencyKey":"point"}"""))
            .Expect(HttpStatusCode.Created);
        var exponent = (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", organization.Key.Bearer, """{"credits":1E1,"idempotencyKey":"exponent"}"""))
            .Expect(HttpStatusCode.Created);
        (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", organization.Key.Bearer, """{"credits":1.5,"idempotencyKey":"half"}"""))
            .ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal((2L, 10L, 88L), (decimalPoint.Long("credits"), exponent.Long("credits"), exponent.Long("remaining")));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task MetadataValuesAreCountedInCharactersNotInUtf16Units()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        // 256 emoji: 256 characters, which .NET's string length counts as 512.
        var emoji = string.Concat(Enumerable.Repeat("\U0001F600", Limits.TextLengthMax));

        (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "emoji", metadata = new Dictionary<string, string> { ["face"] = emoji } }))
            .Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "one-more", metadata = new Dictionary<string, string> { ["face"] = emoji + "a" } }))
            .ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AConsumptionWithoutCreditsSpendsOneCredit()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        var receipt = (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "one" })).Expect(HttpStatusCode.Created);

        Assert.Equal(1, receipt.Long("credits"));
        Assert.Equal(99, receipt.Long("remaining"));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheIdempotencyKeyMayComeInTheHeaderOrInBothHeaderAndBodyWhenTheyAgree()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        var fromHeader = (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 2 },
            new() { ["Idempotency-Key"] = "header-key" })).Expect(HttpStatusCode.Created);
        var replayFromBody = (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 2, idempotencyKey = "header-key" }))
            .Expect(HttpStatusCode.OK);
        var fromBoth = (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 2, idempotencyKey = "both-key" },
            new() { ["Idempotency-Key"] = "both-key" })).Expect(HttpStatusCode.Created);

        Assert.Equal(fromHeader.Text, replayFromBody.Text);
        Assert.NotEqual(fromHeader.String("id"), fromBoth.String("id"));
        Assert.Equal(96, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ARetryWithTheSameKeyAndParametersIsReplayedWith200TheSameBodyAndChargesOnce()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var body = new { credits = 4, idempotencyKey = "retry-me", identifier = "user-1", metadata = new Dictionary<string, string> { ["a"] = "b" } };

        var first = (await PostAsync(organization.Key, "/v1/consumptions", body)).Expect(HttpStatusCode.Created);
        var second = (await PostAsync(organization.Key, "/v1/consumptions", body)).Expect(HttpStatusCode.OK);
        var third = (await PostAsync(organization.Key, "/v1/consumptions", body)).Expect(HttpStatusCode.OK);

        Assert.False(first.IsReplay);
        Assert.True(second.IsReplay, "a replay carries Idempotent-Replayed: true");
        Assert.True(third.IsReplay);
        Assert.Equal(first.Text, second.Text);
        Assert.Equal(first.Text, third.Text);
        var balance = await server.BalanceAsync(organization.Key);
        Assert.Equal(4, balance["used"]!.GetValue<long>());
        Assert.Equal(96, balance["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheSameKeyWithOtherParametersIs409IdempotencyConflictAndChargesNothing()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 1, idempotencyKey = "k", identifier = "u" })).Expect(HttpStatusCode.Created);
        var before = await server.SnapshotAsync(organization.Id);

        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 2, idempotencyKey = "k", identifier = "u" }))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 1, idempotencyKey = "k", identifier = "other" }))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 1, idempotencyKey = "k", identifier = "u", metadata = new Dictionary<string, string> { ["x"] = "y" } }))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        (await PostAsync(organization.Key, "/v1/holds", new { credits = 1, idempotencyKey = "k" }))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AnEmptyLabelOrMetadataIsNoneSoARetryThatLeavesItOutReplaysTheSameBody()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var first = (await PostAsync(organization.Key, "/v1/consumptions",
            new { idempotencyKey = "empty-labels", assistantId = "", identifier = "", metadata = new Dictionary<string, string>() })).Expect(HttpStatusCode.Created);
        Assert.Null(first.Json!["assistantId"]);
        Assert.Null(first.Json!["identifier"]);
        Assert.Null(first.Json!["metadata"]);

        var retry = (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "empty-labels" })).Expect(HttpStatusCode.OK);
        Assert.True(retry.IsReplay);
        Assert.Equal(first.Text, retry.Text);
        // A label that is there is another request.
        (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "empty-labels", assistantId = "a" }))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        Assert.Equal(1, (await server.BalanceAsync(organization.Key))["used"]!.GetValue<long>());
    }

    [Fact]
    public async Task ABodyAfterAByteOrderMarkIsReadAndABodyThatIsNotJsonIsToldWhereItBreaks()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await PostAsync(organization.Key, "/v1/consumptions", "\uFEFF{\"credits\":2,\"idempotencyKey\":\"after-a-mark\"}")).Expect(HttpStatusCode.Created);

        var cut = (await PostAsync(organization.Key, "/v1/consumptions", "{\"credits\":1")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        var message = cut.Json!["errors"]!["body"]![0]!.GetValue<string>();
        Assert.StartsWith("The body is not valid JSON (after 12 bytes): ", message);
        Assert.DoesNotContain("LineNumber", message);
        var twice = (await PostAsync(organization.Key, "/v1/consumptions", "{\"credits\":1,\"credits\":9}")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.StartsWith("The body names a field twice: ", twice.Json!["errors"]!["body"]![0]!.GetValue<string>());
        Assert.Equal(2, (await server.BalanceAsync(organization.Key))["used"]!.GetValue<long>());
    }

    [Fact]
    public async Task MetadataThatOnlyMovesAnEqualsSignBetweenKeyAndValueIsOtherParameters()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var first = new Dictionary<string, string> { ["a=b"] = "c", ["note"] = "line one\nline two" };
        (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "moved", metadata = first })).Expect(HttpStatusCode.Created);
        var before = await server.SnapshotAsync(organization.Id);

        (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "moved", metadata = new Dictionary<string, string> { ["a"] = "b=c", ["note"] = "line one\nline two" } }))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        Assert.True((await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "moved", metadata = first })).Expect(HttpStatusCode.OK).IsReplay);

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task IdempotencyKeysBelongToOneOrganization()
    {
        var first = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var second = await server.CreateOrganizationAsync(creditsPerPeriod: 10);

        var one = (await PostAsync(first.Key, "/v1/consumptions", new { credits = 1, idempotencyKey = "shared" })).Expect(HttpStatusCode.Created);
        var two = (await PostAsync(second.Key, "/v1/consumptions", new { credits = 2, idempotencyKey = "shared" })).Expect(HttpStatusCode.Created);

        Assert.NotEqual(one.String("id"), two.String("id"));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ConsumingMoreThanRemainingIs402InsufficientCreditsAndTheRefusalIsNotRemembered()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var before = await server.SnapshotAsync(organization.Id);

        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 11, idempotencyKey = "big" }))
            .ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        Assert.Equal(before, await server.SnapshotAsync(organization.Id));

        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/grants", new { credits = 1, idempotencyKey = "topup" }))
            .Expect(HttpStatusCode.Created);
        var retried = (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 11, idempotencyKey = "big" })).Expect(HttpStatusCode.Created);

        Assert.Equal(0, retried.Long("remaining"));
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 1, idempotencyKey = "one-more" }))
            .ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task SpendingWithoutAnActiveSubscriptionIs402NoActiveSubscription()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);
        (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organization.Id}/grants", new { credits = 50, idempotencyKey = "topup" }))
            .Expect(HttpStatusCode.Created);
        var before = await server.SnapshotAsync(organization.Id);

        (await PostAsync(organization.Key, "/v1/consumptions", new { idempotencyKey = "c" })).ExpectProblem(HttpStatusCode.PaymentRequired, "no_active_subscription");
        (await PostAsync(organization.Key, "/v1/holds", new { credits = 1, idempotencyKey = "h" })).ExpectProblem(HttpStatusCode.PaymentRequired, "no_active_subscription");

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AnUnlimitedSubscriptionNeverRefusesAndReportsRemainingAsMinusOne()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: null);

        var receipt = (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 1_000_000_000, idempotencyKey = "huge" })).Expect(HttpStatusCode.Created);
        var hold = (await PostAsync(organization.Key, "/v1/holds", new { credits = 1_000_000_000, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, $"/v1/holds/{hold.String("id")}/capture", new { credits = 5, idempotencyKey = "capture" })).Expect(HttpStatusCode.Created);

        Assert.Equal(-1, receipt.Long("remaining"));
        var balance = await server.BalanceAsync(organization.Key);
        Assert.True(balance["unlimited"]!.GetValue<bool>());
        Assert.Equal(-1, balance["remaining"]!.GetValue<long>());
        Assert.Equal(-1, balance["total"]!.GetValue<long>());
        Assert.Equal(1_000_000_005, balance["used"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ARefundWithoutCreditsGivesTheWholeConsumptionBack()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var consumption = (await server.ConsumeAsync(organization.Key, credits: 4)).Expect(HttpStatusCode.Created);

        var refund = (await PostAsync(organization.Key, $"/v1/consumptions/{consumption.String("id")}/refunds", new { idempotencyKey = "refund" }))
            .Expect(HttpStatusCode.Created);

        Assert.Equal(consumption.String("id"), refund.String("consumptionId"));
        Assert.Equal(4, refund.Long("credits"));
        Assert.Equal(4, refund.Long("refundedTotal"));
        Assert.Equal(10, refund.Long("remaining"));
        Assert.Equal(0, (await server.BalanceAsync(organization.Key))["used"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task PartialRefundsAddUpToAtMostWhatWasConsumed()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var id = (await server.ConsumeAsync(organization.Key, credits: 5)).Expect(HttpStatusCode.Created).String("id");
        var path = $"/v1/consumptions/{id}/refunds";

        (await PostAsync(organization.Key, path, new { credits = 2, idempotencyKey = "r1" })).Expect(HttpStatusCode.Created);
        var before = await server.SnapshotAsync(organization.Id);
        var tooMuch = (await PostAsync(organization.Key, path, new { credits = 4, idempotencyKey = "r2" })).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(tooMuch.Json!["errors"]!["credits"]);
        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        var rest = (await PostAsync(organization.Key, path, new { credits = 3, idempotencyKey = "r3" })).Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, path, new { idempotencyKey = "r4" })).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal(5, rest.Long("refundedTotal"));
        Assert.Equal(10, rest.Long("remaining"));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ARefundIsReplayedOnItsKeyAndConflictsOnOtherParameters()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var id = (await server.ConsumeAsync(organization.Key, credits: 5)).Expect(HttpStatusCode.Created).String("id");
        var path = $"/v1/consumptions/{id}/refunds";

        var first = (await PostAsync(organization.Key, path, new { credits = 2, idempotencyKey = "refund" })).Expect(HttpStatusCode.Created);
        var replay = (await PostAsync(organization.Key, path, new { credits = 2, idempotencyKey = "refund" })).Expect(HttpStatusCode.OK);
        (await PostAsync(organization.Key, path, new { credits = 3, idempotencyKey = "refund" })).ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");

        Assert.True(replay.IsReplay);
        Assert.Equal(first.Text, replay.Text);
        Assert.Equal(7, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task RefundingAnUnknownConsumptionIs404NotFound()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);

        (await PostAsync(organization.Key, $"/v1/consumptions/{Guid.CreateVersion7()}/refunds", new { idempotencyKey = "r" }))
            .ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await PostAsync(organization.Key, "/v1/consumptions/not-an-id/refunds", new { idempotencyKey = "r" }))
            .ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AHoldReservesCreditsAndACaptureChargesPartAndReleasesTheRest()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        var hold = (await PostAsync(organization.Key, "/v1/holds", new { credits = 30, idempotencyKey = "hold", ttlSeconds = 600, assistantId = "a1" }))
            .Expect(HttpStatusCode.Created);
        Assert.Equal(30, hold.Long("credits"));
        Assert.Equal(70, hold.Long("remaining"));
        Assert.True(hold.Json!["expiresAt"]!.GetValue<DateTimeOffset>() > hold.Json!["createdAt"]!.GetValue<DateTimeOffset>());
        var held = await server.BalanceAsync(organization.Key);
        Assert.Equal(30, held["held"]!.GetValue<long>());
        Assert.Equal(70, held["remaining"]!.GetValue<long>());

        var capture = (await PostAsync(organization.Key, $"/v1/holds/{hold.String("id")}/capture", new { credits = 12, idempotencyKey = "capture" }))
            .Expect(HttpStatusCode.Created);

        Assert.Equal(hold.String("id"), capture.String("holdId"));
        Assert.Equal(12, capture.Long("captured"));
        Assert.Equal(18, capture.Long("released"));
        Assert.Equal(88, capture.Long("remaining"));
        var after = await server.BalanceAsync(organization.Key);
        Assert.Equal(0, after["held"]!.GetValue<long>());
        Assert.Equal(12, after["used"]!.GetValue<long>());
        Assert.Equal(88, after["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ACapturedHoldCanBeRefundedThroughItsConsumption()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var hold = (await PostAsync(organization.Key, "/v1/holds", new { credits = 10, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created);
        var capture = (await PostAsync(organization.Key, $"/v1/holds/{hold.String("id")}/capture", new { credits = 10, idempotencyKey = "capture" }))
            .Expect(HttpStatusCode.Created);

        var refund = (await PostAsync(organization.Key, $"/v1/consumptions/{capture.String("consumptionId")}/refunds", new { credits = 4, idempotencyKey = "refund" }))
            .Expect(HttpStatusCode.Created);

        Assert.Equal(94, refund.Long("remaining"));
        Assert.Equal(6, (await server.BalanceAsync(organization.Key))["used"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CaptureAndReleaseAreReplayedOnTheirKeyAndASettledHoldIs409HoldAlreadySettled()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var captured = (await PostAsync(organization.Key, "/v1/holds", new { credits = 10, idempotencyKey = "h1" })).Expect(HttpStatusCode.Created).String("id");
        var released = (await PostAsync(organization.Key, "/v1/holds", new { credits = 10, idempotencyKey = "h2" })).Expect(HttpStatusCode.Created).String("id");

        var capture = (await PostAsync(organization.Key, $"/v1/holds/{captured}/capture", new { credits = 4, idempotencyKey = "c1" })).Expect(HttpStatusCode.Created);
        var captureReplay = (await PostAsync(organization.Key, $"/v1/holds/{captured}/capture", new { credits = 4, idempotencyKey = "c1" })).Expect(HttpStatusCode.OK);
        var release = (await PostAsync(organization.Key, $"/v1/holds/{released}/release", new { idempotencyKey = "r1" })).Expect(HttpStatusCode.Created);
        var releaseReplay = (await PostAsync(organization.Key, $"/v1/holds/{released}/release", new { idempotencyKey = "r1" })).Expect(HttpStatusCode.OK);
        var before = await server.SnapshotAsync(organization.Id);

        Assert.True(captureReplay.IsReplay);
        Assert.Equal(capture.Text, captureReplay.Text);
        Assert.True(releaseReplay.IsReplay);
        Assert.Equal(release.Text, releaseReplay.Text);
        Assert.Equal(10, release.Long("released"));
        (await PostAsync(organization.Key, $"/v1/holds/{captured}/capture", new { credits = 4, idempotencyKey = "c2" })).ExpectProblem(HttpStatusCode.Conflict, "hold_already_settled");
        (await PostAsync(organization.Key, $"/v1/holds/{captured}/release", new { idempotencyKey = "r2" })).ExpectProblem(HttpStatusCode.Conflict, "hold_already_settled");
        (await PostAsync(organization.Key, $"/v1/holds/{released}/capture", new { credits = 1, idempotencyKey = "c3" })).ExpectProblem(HttpStatusCode.Conflict, "hold_already_settled");
        (await PostAsync(organization.Key, $"/v1/holds/{released}/release", new { idempotencyKey = "r3" })).ExpectProblem(HttpStatusCode.Conflict, "hold_already_settled");
        (await PostAsync(organization.Key, $"/v1/holds/{captured}/capture", new { credits = 5, idempotencyKey = "c1" })).ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        Assert.Equal(4, before.Used);
        Assert.Equal(96, before.Remaining);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CapturingMoreThanHeldIs400AndLeavesTheHoldOpen()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var hold = (await PostAsync(organization.Key, "/v1/holds", new { credits = 10, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created).String("id");

        (await PostAsync(organization.Key, $"/v1/holds/{hold}/capture", new { credits = 11, idempotencyKey = "c1" })).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(10, (await server.BalanceAsync(organization.Key))["held"]!.GetValue<long>());

        (await PostAsync(organization.Key, $"/v1/holds/{hold}/capture", new { credits = 10, idempotencyKey = "c2" })).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AHoldBeyondRemainingIs402InsufficientCreditsAndHeldCreditsCannotBeConsumed()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);

        (await PostAsync(organization.Key, "/v1/holds", new { credits = 11, idempotencyKey = "too-big" })).ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        (await PostAsync(organization.Key, "/v1/holds", new { credits = 8, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 3, idempotencyKey = "c" })).ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 2, idempotencyKey = "c2" })).Expect(HttpStatusCode.Created);

        Assert.Equal(0, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CapturingOrReleasingAnUnknownHoldIs404NotFound()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);

        (await PostAsync(organization.Key, $"/v1/holds/{Guid.CreateVersion7()}/capture", new { credits = 1, idempotencyKey = "c" })).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await PostAsync(organization.Key, $"/v1/holds/{Guid.CreateVersion7()}/release", new { idempotencyKey = "r" })).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task UsageTotalsConsumptionsAndRefundsByDayAndByAssistant()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 5, idempotencyKey = "a", assistantId = "bot-a" })).Expect(HttpStatusCode.Created);
        var refunded = (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 3, idempotencyKey = "b", assistantId = "bot-b" })).Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, "/v1/consumptions", new { credits = 2, idempotencyKey = "c" })).Expect(HttpStatusCode.Created);
        (await PostAsync(organization.Key, $"/v1/consumptions/{refunded.String("id")}/refunds", new { credits = 1, idempotencyKey = "r" })).Expect(HttpStatusCode.Created);

        var byDay = (await GetAsync(organization.Key, "/v1/usage")).Expect(HttpStatusCode.OK);
        Assert.Equal(organization.Id, byDay.String("organizationId"));
        Assert.Equal("day", byDay.String("groupBy"));
        Assert.Equal(10, byDay.Long("consumed"));
        Assert.Equal(1, byDay.Long("refunded"));
        Assert.Equal(9, byDay.Long("net"));
        Assert.Equal(3, byDay.Long("count"));
        Assert.Equal(10, byDay.Json!["buckets"]!.AsArray().Sum(bucket => bucket!["consumed"]!.GetValue<long>()));

        var byAssistant = (await GetAsync(organization.Key, "/v1/usage?groupBy=assistant")).Expect(HttpStatusCode.OK);
        var buckets = byAssistant.Json!["buckets"]!.AsArray().ToDictionary(bucket => bucket!["key"]!.GetValue<string>(), bucket => bucket!["consumed"]!.GetValue<long>());
        Assert.Equal(new Dictionary<string, long> { [""] = 2, ["bot-a"] = 5, ["bot-b"] = 3 }, buckets);

        var empty = (await GetAsync(organization.Key, "/v1/usage?from=2001-01-01&to=2001-02-01")).Expect(HttpStatusCode.OK);
        Assert.Equal(0, empty.Long("consumed"));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task UsageWithABadWindowOrGroupingIs400NamingTheField()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        foreach (var (query, field) in new[]
                 {
                     ("groupBy=week", "groupBy"), ("from=yesterday", "from"), ("to=2026-13-45", "to"),
                     ("from=2026-02-01&to=2026-01-01", "to"), ("from=2024-01-01&to=2026-01-01", "to"),
                 })
        {
            var problem = (await GetAsync(organization.Key, "/v1/usage?" + query)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem.Json!["errors"]![field] is not null, $"{query}: expected an error on {field}: {problem.Text}");
        }
        // A window with one end left out names the end that was sent and the default the other end took.
        var before = (await GetAsync(organization.Key, "/v1/usage?to=2000-01-01T00:00:00Z")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("defaults to the current period's start", before.Json!["errors"]!["to"]![0]!.GetValue<string>());
        var after = (await GetAsync(organization.Key, "/v1/usage?from=2999-01-01T00:00:00Z")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Contains("defaults to now", after.Json!["errors"]!["from"]![0]!.GetValue<string>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheLedgerListsEntriesNewestFirstInPages()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        for (var index = 0; index < 5; index++) (await server.ConsumeAsync(organization.Key, credits: index + 1)).Expect(HttpStatusCode.Created);

        var all = (await GetAsync(organization.Key, "/v1/ledger")).Expect(HttpStatusCode.OK);
        var entries = all.Json!["items"]!.AsArray();
        Assert.Equal(6, entries.Count); // the allowance grant and five consumptions
        Assert.Null(all.Json!["nextCursor"]);
        Assert.Equal("grant", entries[^1]!["kind"]!.GetValue<string>());
        Assert.Equal(100, entries[^1]!["credits"]!.GetValue<long>());
        Assert.Equal(-5, entries[0]!["credits"]!.GetValue<long>());
        var ids = entries.Select(entry => entry!["id"]!.GetValue<long>()).ToList();
        Assert.Equal(ids.OrderDescending(), ids);

        var paged = new List<long>();
        string? cursor = null;
        do
        {
            var page = (await GetAsync(organization.Key, "/v1/ledger?limit=4" + (cursor is null ? "" : "&cursor=" + cursor))).Expect(HttpStatusCode.OK);
            paged.AddRange(page.Json!["items"]!.AsArray().Select(entry => entry!["id"]!.GetValue<long>()));
            cursor = page.Json!["nextCursor"]?.GetValue<string>();
        }
        while (cursor is not null);
        Assert.Equal(ids, paged);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheLedgerRefusesABadCursorOrLimitWith400()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);

        foreach (var (query, field) in new[] { ("cursor=abc", "cursor"), ("cursor=-1", "cursor"), ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit") })
        {
            var problem = (await GetAsync(organization.Key, "/v1/ledger?" + query)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem.Json!["errors"]![field] is not null, $"{query}: expected an error on {field}: {problem.Text}");
        }
        Assert.Single((await GetAsync(organization.Key, "/v1/ledger?limit=1")).Expect(HttpStatusCode.OK).Json!["items"]!.AsArray());
        Assert.Single((await GetAsync(organization.Key, "/v1/ledger?limit=1000")).Expect(HttpStatusCode.OK).Json!["items"]!.AsArray());
        await server.AssertLedgerVerifiedAsync();
    }
}
