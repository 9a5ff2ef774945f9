using System.Net;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>SPEC §3.4: the operator's API, success and failure paths of every endpoint.</summary>
public sealed class AdminApiTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    private static string Organizations(string? id = null, string? rest = null) =>
        "/v1/admin/organizations" + (id is null ? "" : "/" + id) + (rest is null ? "" : "/" + rest);

    private Task<Reply> AdminAsync(HttpMethod method, string path, object? body = null, Dictionary<string, string>? headers = null) =>
        server.AdminAsync(method, path, body, headers);

    [Fact]
    public async Task CreatingAnOrganizationReturns201WithItsIdNameStatusAndCreationTime()
    {
        var externalId = "ext-" + Guid.NewGuid();

        var created = (await AdminAsync(HttpMethod.Post, Organizations(), new { name = "Acme Support", externalId })).Expect(HttpStatusCode.Created);

        var id = created.String("id");
        Assert.Matches("^org-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", id);
        Assert.Equal("Acme Support", created.String("name"));
        Assert.Equal(externalId, created.String("externalId"));
        Assert.Equal("active", created.String("status"));
        Assert.True(created.Json!["createdAt"]!.GetValue<DateTimeOffset>() > DateTimeOffset.UnixEpoch);
        Assert.Equal(created.Text, (await AdminAsync(HttpMethod.Get, Organizations(id))).Expect(HttpStatusCode.OK).Text);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ACreationRetriedWithItsIdempotencyKeyAnswersTheFirstOrganizationAndMakesNoSecond()
    {
        var externalId = "retried-" + Guid.NewGuid();
        var headers = new Dictionary<string, string> { ["Idempotency-Key"] = "create-" + externalId };
        var first = (await AdminAsync(HttpMethod.Post, Organizations(), new { name = "Retried", externalId }, headers)).Expect(HttpStatusCode.Created);

        var retry = (await AdminAsync(HttpMethod.Post, Organizations(), new { name = "Retried", externalId }, headers)).Expect(HttpStatusCode.OK);
        Assert.True(retry.IsReplay);
        Assert.Equal(first.Text, retry.Text);
        (await AdminAsync(HttpMethod.Post, Organizations(), new { name = "Other", externalId }, headers))
            .ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        var found = (await AdminAsync(HttpMethod.Get, Organizations() + "?q=" + Uri.EscapeDataString(externalId))).Expect(HttpStatusCode.OK);
        Assert.Single(found.Json!["items"]!.AsArray());
        // The admin API's keys are its own: an organization may use the same key for a consumption.
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.ConsumeAsync(organization.Key, idempotencyKey: "create-" + externalId)).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CreatingAnOrganizationWithoutAUsableNameIs400NamingTheField()
    {
        foreach (var body in new object[] { new { }, new { name = "" }, new { name = "   " }, new { name = 5 }, new { name = new string('n', 257) }, new { name = "ok", externalId = 7 } })
        {
            var problem = (await AdminAsync(HttpMethod.Post, Organizations(), body)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem.Json!["errors"]!.AsObject().Count > 0, problem.Text);
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ReadingAnUnknownOrganizationIs404()
    {
        (await AdminAsync(HttpMethod.Get, Organizations("org-" + Guid.NewGuid()))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Patch, Organizations("org-" + Guid.NewGuid()), new { name = "x" })).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Delete, Organizations("org-" + Guid.NewGuid()))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ListingOrganizationsFindsThemByQueryWithTheirBalanceSummary()
    {
        var externalId = "crm-" + Guid.NewGuid();
        var created = (await AdminAsync(HttpMethod.Post, Organizations(), new { name = "Listed Co", externalId })).Expect(HttpStatusCode.Created).String("id");
        (await AdminAsync(HttpMethod.Put, Organizations(created, "subscription"), new { plan = "basic", creditsPerPeriod = 40, period = "week" })).Expect(HttpStatusCode.OK);
        var key = await server.CreateKeyAsync(created);
        (await server.ConsumeAsync(key, credits: 15)).Expect(HttpStatusCode.Created);

        var page = (await AdminAsync(HttpMethod.Get, Organizations() + "?q=" + externalId)).Expect(HttpStatusCode.OK);

        var summary = Assert.Single(page.Json!["items"]!.AsArray())!;
        Assert.Equal(created, summary["id"]!.GetValue<string>());
        Assert.Equal("Listed Co", summary["name"]!.GetValue<string>());
        Assert.Equal("active", summary["status"]!.GetValue<string>());
        var balance = summary["balance"]!;
        Assert.Equal("active", balance["subscriptionStatus"]!.GetValue<string>());
        Assert.Equal(40, balance["total"]!.GetValue<long>());
        Assert.Equal(15, balance["used"]!.GetValue<long>());
        Assert.Equal(25, balance["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ListingOrganizationsPagesWithACursor()
    {
        var tag = "pagetest" + Guid.NewGuid().ToString("N")[..8];
        var ids = new List<string>();
        for (var index = 0; index < 5; index++)
        {
            ids.Add((await AdminAsync(HttpMethod.Post, Organizations(), new { name = $"{tag} {index}" })).Expect(HttpStatusCode.Created).String("id"));
        }

        var seen = new List<string>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = (await AdminAsync(HttpMethod.Get, Organizations() + $"?q={tag}&limit=2" + (cursor is null ? "" : "&cursor=" + cursor))).Expect(HttpStatusCode.OK);
            seen.AddRange(page.Json!["items"]!.AsArray().Select(item => item!["id"]!.GetValue<string>()));
            cursor = page.Json!["nextCursor"]?.GetValue<string>();
            pages++;
        }
        while (cursor is not null && pages < 10);

        Assert.Equal(3, pages);
        Assert.Equal(ids.Order(StringComparer.Ordinal), seen);
        (await AdminAsync(HttpMethod.Get, Organizations() + "?limit=0")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await AdminAsync(HttpMethod.Get, Organizations() + "?limit=1001")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await AdminAsync(HttpMethod.Get, Organizations() + "?q=" + new string('q', 257))).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await AdminAsync(HttpMethod.Get, Organizations() + "?cursor=zz")).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        await server.AssertLedgerVerifiedAsync();
    }

    [Theory]
    [InlineData("snake_case {0}", "snake_case {0}")]
    [InlineData("100% {0}", "100% {0}")]
    [InlineData("Österreich {0}", "Österreich {0}")]
    [InlineData("Acme {0}", "acme {0}")]
    public async Task SearchingOrganizationsFindsANameByItsExactTextWithWildcardCharactersAsThemselves(string name, string search)
    {
        var tag = Guid.NewGuid().ToString("N")[..8];
        var created = (await AdminAsync(HttpMethod.Post, Organizations(), new { name = string.Format(name, tag) })).Expect(HttpStatusCode.Created);
        // A near miss, where the name has a wildcard character: the name with it replaced, which a wildcard would match.
        var nearMiss = string.Format(name, tag).Replace('_', 'x').Replace('%', 'x');
        if (nearMiss != string.Format(name, tag)) (await AdminAsync(HttpMethod.Post, Organizations(), new { name = nearMiss })).Expect(HttpStatusCode.Created);

        var found = (await AdminAsync(HttpMethod.Get, Organizations() + "?q=" + Uri.EscapeDataString(string.Format(search, tag)))).Expect(HttpStatusCode.OK);

        Assert.Equal(created.String("id"), Assert.Single(found.Json!["items"]!.AsArray())!["id"]!.GetValue<string>());
    }

    [Fact]
    public async Task PatchRenamesAnOrganizationAndDisablesAndEnablesIt()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);

        var renamed = (await AdminAsync(HttpMethod.Patch, Organizations(organization.Id), new { name = "Renamed" })).Expect(HttpStatusCode.OK);
        Assert.Equal("Renamed", renamed.String("name"));
        Assert.Equal("active", renamed.String("status"));

        var disabled = (await AdminAsync(HttpMethod.Patch, Organizations(organization.Id), new { status = "disabled" })).Expect(HttpStatusCode.OK);
        Assert.Equal("disabled", disabled.String("status"));
        Assert.Equal("Renamed", disabled.String("name"));
        (await server.ConsumeAsync(organization.Key)).ExpectProblem(HttpStatusCode.NotFound, "not_found");

        (await AdminAsync(HttpMethod.Patch, Organizations(organization.Id), new { status = "active" })).Expect(HttpStatusCode.OK);
        (await server.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task PatchWithABadNameOrStatusIs400AndChangesNothing()
    {
        var organization = await server.CreateOrganizationAsync(name: "Unchanged");

        foreach (var body in new object[] { new { name = "" }, new { status = "deleted" }, new { status = "paused" }, new { status = 1 }, new { name = new string('n', 257) } })
        {
            (await AdminAsync(HttpMethod.Patch, Organizations(organization.Id), body)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        }

        var read = (await AdminAsync(HttpMethod.Get, Organizations(organization.Id))).Expect(HttpStatusCode.OK);
        Assert.Equal("Unchanged", read.String("name"));
        Assert.Equal("active", read.String("status"));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task DeletingAnOrganizationHidesItFromEveryApi()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.ConsumeAsync(organization.Key, credits: 2)).Expect(HttpStatusCode.Created);

        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id))).Expect(HttpStatusCode.NoContent);

        (await AdminAsync(HttpMethod.Get, Organizations(organization.Id))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "balance"))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "keys"))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "assistants"))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), new { credits = 1, idempotencyKey = "g" })).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await AdminAsync(HttpMethod.Get, Organizations() + "?q=" + organization.Id)).Expect(HttpStatusCode.OK).Json!["items"]!.AsArray());
        (await server.CallAsync(HttpMethod.Get, "/v1/balance", organization.Key.Bearer)).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await server.ConsumeAsync(organization.Key)).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AKeyIsCreatedWithItsSecretShownOnceAndListedWithoutIt()
    {
        var organization = await server.CreateOrganizationAsync();

        var created = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "keys"), new { name = "backend" })).Expect(HttpStatusCode.Created);
        var secret = created.String("secretKey");
        Assert.Matches("^sk_[0-9A-Za-z]{32,}$", secret);
        Assert.Matches("^pk_[0-9A-Za-z]+$", created.String("publicKey"));
        Assert.Equal(organization.Id, created.String("organizationId"));
        Assert.Equal("backend", created.String("name"));
        Assert.Equal(["balance:read", "usage:write"], created.Json!["scopes"]!.AsArray().Select(scope => scope!.GetValue<string>()));

        var listed = (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "keys"))).Expect(HttpStatusCode.OK);
        Assert.DoesNotContain(secret, listed.Text);
        Assert.DoesNotContain("secretKey", listed.Text);
        Assert.DoesNotContain(organization.Key.SecretKey, listed.Text);
        var keys = listed.Json!.AsArray();
        Assert.Equal(2, keys.Count);
        var listedKey = keys.Single(key => key!["id"]!.GetValue<string>() == created.String("id"))!;
        Assert.Equal(created.String("publicKey"), listedKey["publicKey"]!.GetValue<string>());
        // The time the key was created is the same, to the millisecond Tally stores, when it is created and when listed.
        Assert.Equal(created.String("createdAt"), listedKey["createdAt"]!.GetValue<string>());
        Assert.Null(listedKey["revokedAt"]);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AKeyIsCreatedWithTheScopesAskedFor()
    {
        var organization = await server.CreateOrganizationAsync();

        var readOnly = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "keys"), new { scopes = new[] { "balance:read" } })).Expect(HttpStatusCode.Created);

        Assert.Equal(["balance:read"], readOnly.Json!["scopes"]!.AsArray().Select(scope => scope!.GetValue<string>()));
        foreach (var body in new object[] { new { scopes = Array.Empty<string>() }, new { scopes = new[] { "admin" } }, new { scopes = "balance:read" }, new { scopes = new[] { 1 } } })
        {
            (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "keys"), body)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        }
        (await AdminAsync(HttpMethod.Post, Organizations("org-" + Guid.NewGuid(), "keys"), new { })).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Get, Organizations("org-" + Guid.NewGuid(), "keys"))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task RevokingAKeyMarksItRevokedAndRevokingItAgainIsHarmless()
    {
        var organization = await server.CreateOrganizationAsync();
        var other = await server.CreateOrganizationAsync();

        var revoked = (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "keys/" + organization.Key.Id))).Expect(HttpStatusCode.OK);
        Assert.NotNull(revoked.Json!["revokedAt"]);
        Assert.DoesNotContain(organization.Key.SecretKey, revoked.Text);
        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "keys/" + organization.Key.Id))).Expect(HttpStatusCode.OK);

        var listed = (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "keys"))).Expect(HttpStatusCode.OK);
        Assert.NotNull(Assert.Single(listed.Json!.AsArray())!["revokedAt"]);
        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "keys/" + Guid.NewGuid()))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        // Another organization's key id is not found through this organization.
        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "keys/" + other.Key.Id))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await server.CallAsync(HttpMethod.Get, "/v1/balance", other.Key.Bearer)).Expect(HttpStatusCode.OK);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task PuttingASubscriptionStartsAPeriodWithItsAllowance()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);
        var anchor = DateTimeOffset.UtcNow.AddDays(-3);

        var subscription = (await AdminAsync(HttpMethod.Put, Organizations(organization.Id, "subscription"), new
        {
            plan = "team", creditsPerPeriod = 500, period = "week", anchor = anchor.ToString("O"), rolloverMax = 50,
        })).Expect(HttpStatusCode.OK);

        Assert.Equal("active", subscription.String("status"));
        Assert.Equal("team", subscription.String("plan"));
        Assert.Equal("week", subscription.String("period"));
        Assert.Equal(500, subscription.Long("creditsPerPeriod"));
        Assert.Equal(50, subscription.Long("rolloverMax"));
        var periodStart = subscription.Json!["periodStart"]!.GetValue<DateTimeOffset>();
        Assert.Equal(TimeSpan.FromDays(7), subscription.Json!["periodEnd"]!.GetValue<DateTimeOffset>() - periodStart);
        Assert.Equal(anchor.ToUnixTimeMilliseconds(), periodStart.ToUnixTimeMilliseconds());
        var balance = await server.BalanceAsync(organization.Key);
        Assert.Equal(500, balance["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task PuttingTheSameSubscriptionAgainChangesNothing()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);
        var body = new { plan = "pro", creditsPerPeriod = 100, period = "month" };
        var first = (await AdminAsync(HttpMethod.Put, Organizations(organization.Id, "subscription"), body)).Expect(HttpStatusCode.OK);
        (await server.ConsumeAsync(organization.Key, credits: 10)).Expect(HttpStatusCode.Created);
        var before = await server.SnapshotAsync(organization.Id);

        var second = (await AdminAsync(HttpMethod.Put, Organizations(organization.Id, "subscription"), body)).Expect(HttpStatusCode.OK);

        Assert.Equal(first.Text, second.Text);
        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ASubscriptionWithNullCreditsIsUnlimited()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);

        var subscription = (await AdminAsync(HttpMethod.Put, Organizations(organization.Id, "subscription"),
            new { plan = "enterprise", creditsPerPeriod = (long?)null, period = "year" })).Expect(HttpStatusCode.OK);

        Assert.True(subscription.Json!["unlimited"]!.GetValue<bool>());
        Assert.Null(subscription.Json!["creditsPerPeriod"]);
        (await server.ConsumeAsync(organization.Key, credits: 1_000_000)).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task PuttingAnInvalidSubscriptionIs400NamingEachField()
    {
        var organization = await server.CreateOrganizationAsync(subscribe: false);

        foreach (var (body, field) in new (object, string)[]
                 {
                     (new { creditsPerPeriod = 1, period = "month" }, "plan"),
                     (new { plan = "p", period = "month" }, "creditsPerPeriod"),
                     (new { plan = "p", creditsPerPeriod = -1, period = "month" }, "creditsPerPeriod"),
                     (new { plan = "p", creditsPerPeriod = 1_000_000_000_001, period = "month" }, "creditsPerPeriod"),
                     (new { plan = "p", creditsPerPeriod = "ten", period = "month" }, "creditsPerPeriod"),
                     (new { plan = "p", creditsPerPeriod = 1 }, "period"),
                     (new { plan = "p", creditsPerPeriod = 1, period = "fortnight" }, "period"),
                     (new { plan = "p", creditsPerPeriod = 1, period = "month", anchor = "soon" }, "anchor"),
                     (new { plan = "p", creditsPerPeriod = 1, period = "month", rolloverMax = -5 }, "rolloverMax"),
                 })
        {
            var problem = (await AdminAsync(HttpMethod.Put, Organizations(organization.Id, "subscription"), body)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem.Json!["errors"]![field] is not null, $"expected an error on {field}: {problem.Text}");
        }

        Assert.Equal("none", (await server.BalanceAsync(organization.Key))["subscription"]!["status"]!.GetValue<string>());
        (await AdminAsync(HttpMethod.Put, Organizations("org-" + Guid.NewGuid(), "subscription"), new { plan = "p", creditsPerPeriod = 1, period = "day" }))
            .ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task CancellingTheSubscriptionStopsSpendingButKeepsTopUps()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), new { credits = 20, idempotencyKey = "topup" })).Expect(HttpStatusCode.Created);

        var cancelled = (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "subscription"))).Expect(HttpStatusCode.OK);

        Assert.Equal("none", cancelled.String("status"));
        (await server.ConsumeAsync(organization.Key)).ExpectProblem(HttpStatusCode.PaymentRequired, "no_active_subscription");
        var balance = await server.BalanceAsync(organization.Key);
        Assert.Equal("none", balance["subscription"]!["status"]!.GetValue<string>());
        Assert.Equal(20, balance["remaining"]!.GetValue<long>());
        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "subscription"))).Expect(HttpStatusCode.OK);
        (await AdminAsync(HttpMethod.Delete, Organizations("org-" + Guid.NewGuid(), "subscription"))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AGrantIsCreatedOnceReplayedOnItsKeyAndConflictsOnOtherParameters()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 0);
        var expiresAt = DateTimeOffset.UtcNow.AddDays(30);
        var body = new { credits = 250, idempotencyKey = "promo-2026", source = "promo", priority = -1, expiresAt = expiresAt.ToString("O"), reason = "launch" };

        var grant = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), body)).Expect(HttpStatusCode.Created);
        var replay = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), body)).Expect(HttpStatusCode.OK);
        (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), body with { credits = 251 })).ExpectProblem(HttpStatusCode.Conflict, "idempotency_conflict");

        Assert.Equal(250, grant.Long("credits"));
        Assert.Equal(250, grant.Long("remaining"));
        Assert.Equal("promo", grant.String("source"));
        Assert.Equal(-1, grant.Long("priority"));
        Assert.Equal(expiresAt.ToUnixTimeMilliseconds(), grant.Json!["expiresAt"]!.GetValue<DateTimeOffset>().ToUnixTimeMilliseconds());
        Assert.True(replay.IsReplay);
        Assert.Equal(grant.Text, replay.Text);
        Assert.Equal(250, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AGrantsReasonMayHoldLineBreaksWhereANameMayNot()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 0);
        var name = (await AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}")).Expect(HttpStatusCode.OK).String("name");

        (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), new { credits = 5, idempotencyKey = "refund-ticket", reason = "ticket 42\r\n\tsecond line" }))
            .Expect(HttpStatusCode.Created);
        (await AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{organization.Id}", new { name = "two\nlines" }))
            .ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");

        Assert.Equal(5, (await server.BalanceAsync(organization.Key))["remaining"]!.GetValue<long>());
        Assert.Equal(name, (await AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}")).Expect(HttpStatusCode.OK).String("name"));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AGrantsExpiryIsCutToTheMillisecondSoItsBurnOrderIsTheOneEveryNodeReadsBack()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 0);
        var promo = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"),
            new { credits = 10, idempotencyKey = "promo", source = "promo", priority = 5, expiresAt = "2027-01-01T00:00:00Z" })).Expect(HttpStatusCode.Created);
        var topup = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"),
            new { credits = 10, idempotencyKey = "topup", priority = 0, expiresAt = "2027-01-01T00:00:00.0004Z" })).Expect(HttpStatusCode.Created);

        // Stored as whole milliseconds, the two expire at once, so the lower priority burns first, as any node that
        // reads them from the store orders them.
        Assert.Equal(new DateTimeOffset(2027, 1, 1, 0, 0, 0, TimeSpan.Zero), topup.Json!["expiresAt"]!.GetValue<DateTimeOffset>());
        var order = (await server.BalanceAsync(organization.Key))["grants"]!.AsArray().Select(grant => grant!["id"]!.GetValue<string>()).ToList();
        Assert.Equal([topup.String("id"), promo.String("id")], order);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ANameMayHoldAnEmojiJoinedByZeroWidthJoiners()
    {
        var created = (await AdminAsync(HttpMethod.Post, "/v1/admin/organizations", new { name = "family \U0001F468\u200D\U0001F469\u200D\U0001F467" }))
            .Expect(HttpStatusCode.Created);

        Assert.Equal("family \U0001F468\u200D\U0001F469\u200D\U0001F467", created.String("name"));
    }

    [Fact]
    public async Task GrantsBurnSoonestExpiringFirstAndTheBalanceListsThemInThatOrder()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 0);
        var lasting = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), new { credits = 10, idempotencyKey = "never" })).Expect(HttpStatusCode.Created);
        var expiring = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"),
            new { credits = 10, idempotencyKey = "soon", source = "promo", expiresAt = DateTimeOffset.UtcNow.AddDays(2).ToString("O") })).Expect(HttpStatusCode.Created);

        (await server.ConsumeAsync(organization.Key, credits: 12)).Expect(HttpStatusCode.Created);

        var grants = (await server.BalanceAsync(organization.Key))["grants"]!.AsArray()
            .Select(grant => (grant!["id"]!.GetValue<string>(), grant!["remaining"]!.GetValue<long>())).ToList();
        // Created lasting first; listed as they are spent.
        Assert.Equal([(expiring.String("id"), 0L), (lasting.String("id"), 8L)], grants);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AnInvalidGrantIs400NamingTheFieldAndGrantsNothing()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        var before = await server.SnapshotAsync(organization.Id);

        foreach (var (body, field) in new (object, string)[]
                 {
                     (new { idempotencyKey = "g" }, "credits"),
                     (new { credits = 0, idempotencyKey = "g" }, "credits"),
                     (new { credits = -5, idempotencyKey = "g" }, "credits"),
                     (new { credits = 1_000_000_000_001, idempotencyKey = "g" }, "credits"),
                     (new { credits = 1 }, "idempotencyKey"),
                     (new { credits = 1, idempotencyKey = "g", source = "allowance" }, "source"),
                     (new { credits = 1, idempotencyKey = "g", source = "rollover" }, "source"),
                     (new { credits = 1, idempotencyKey = "g", source = "gift" }, "source"),
                     (new { credits = 1, idempotencyKey = "g", priority = 2_000_000 }, "priority"),
                     (new { credits = 1, idempotencyKey = "g", expiresAt = "tomorrow" }, "expiresAt"),
                     (new { credits = 1, idempotencyKey = "g", expiresAt = DateTimeOffset.UtcNow.AddDays(-1).ToString("O") }, "expiresAt"),
                 })
        {
            var problem = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), body)).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
            Assert.True(problem.Json!["errors"]![field] is not null, $"expected an error on {field}: {problem.Text}");
        }

        Assert.Equal(before, await server.SnapshotAsync(organization.Id));
        (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "grants"), new { credits = 1_000_000_000_000, idempotencyKey = "max" })).Expect(HttpStatusCode.Created);
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AssistantsAreAddedListedAndRemoved()
    {
        var organization = await server.CreateOrganizationAsync();

        var added = (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "assistants"), new { name = "Sales bot" })).Expect(HttpStatusCode.Created);
        Assert.Equal("Sales bot", added.String("name"));
        Assert.True(Guid.TryParse(added.String("id"), out _));
        Assert.True((await server.BalanceAsync(organization.Key))["hasAssistant"]!.GetValue<bool>());

        var listed = (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "assistants"))).Expect(HttpStatusCode.OK);
        Assert.Equal(added.String("id"), Assert.Single(listed.Json!.AsArray())!["id"]!.GetValue<string>());
        var one = (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "assistants/" + added.String("id")))).Expect(HttpStatusCode.OK);
        Assert.Equal(added.Text, one.Text);
        (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "assistants/" + Guid.NewGuid()))).ExpectProblem(HttpStatusCode.NotFound, "not_found");

        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "assistants/" + added.String("id")))).Expect(HttpStatusCode.NoContent);
        (await AdminAsync(HttpMethod.Delete, Organizations(organization.Id, "assistants/" + added.String("id")))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "assistants/" + added.String("id")))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "assistants"))).Expect(HttpStatusCode.OK).Json!.AsArray());
        Assert.False((await server.BalanceAsync(organization.Key))["hasAssistant"]!.GetValue<bool>());
        (await AdminAsync(HttpMethod.Post, Organizations(organization.Id, "assistants"), new { })).ExpectProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await AdminAsync(HttpMethod.Post, Organizations("org-" + Guid.NewGuid(), "assistants"), new { name = "x" })).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        (await AdminAsync(HttpMethod.Get, Organizations("org-" + Guid.NewGuid(), "assistants"))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheOperatorSeesAnOrganizationsBalanceUsageAndLedgerAsTheOrganizationDoes()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        (await server.ConsumeAsync(organization.Key, credits: 9)).Expect(HttpStatusCode.Created);

        foreach (var (own, admin) in new[] { ("/v1/balance", "balance"), ("/v1/usage?from=2020-01-01&to=2020-06-01", "usage?from=2020-01-01&to=2020-06-01"), ("/v1/ledger", "ledger") })
        {
            var seenByOrganization = (await server.CallAsync(HttpMethod.Get, own, organization.Key.Bearer)).Expect(HttpStatusCode.OK);
            var seenByOperator = (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, admin))).Expect(HttpStatusCode.OK);
            Assert.Equal(seenByOrganization.Text, seenByOperator.Text);
        }
        Assert.Equal(9, (await AdminAsync(HttpMethod.Get, Organizations(organization.Id, "usage"))).Expect(HttpStatusCode.OK).Long("consumed"));
        foreach (var path in new[] { "balance", "usage", "ledger" })
        {
            (await AdminAsync(HttpMethod.Get, Organizations("org-" + Guid.NewGuid(), path))).ExpectProblem(HttpStatusCode.NotFound, "not_found");
        }
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task VerifyReportsACleanLedgerWithWhatItChecked()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 10);
        (await server.ConsumeAsync(organization.Key, credits: 3)).Expect(HttpStatusCode.Created);

        var report = (await AdminAsync(HttpMethod.Get, "/v1/admin/verify")).Expect(HttpStatusCode.OK);

        Assert.True(report.Json!["clean"]!.GetValue<bool>(), report.Text);
        Assert.True(report.Long("organizationsChecked") >= 1);
        Assert.True(report.Long("grantsChecked") >= 1);
        Assert.True(report.Long("entriesChecked") >= 2);
        Assert.Equal(0, report.Long("differencesFound"));
        Assert.Empty(report.Json!["differences"]!.AsArray());
    }
}
