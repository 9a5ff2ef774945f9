using System.Net;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// SPEC §3.5 under fire: ten thousand generated hostile requests (random bytes, mutated JSON, huge and deep
/// values, every malformed Authorization form, path tricks, SQL-looking ids and keys, bytes that are not
/// UTF-8) over raw sockets to every endpoint. None may get a 5xx; every 4xx Tally answers is in its API's
/// envelope; no refused request changes any balance or ledger. The seed is printed, so a failure reproduces.
/// </summary>
public sealed class FuzzTests(TallyServerFixture server, ITestOutputHelper output) : IClassFixture<TallyServerFixture>
{
    private const int RequestCount = 10_000;

    /// <summary>Requests between two balance checks: small, so a batch with an accepted change hides few refusals.</summary>
    private const int BatchSize = 20;

    /// <summary>Connections at once within a batch.</summary>
    private const int Parallelism = 4;

    [Fact]
    public async Task TenThousandHostileRequestsGetNo5xxEvery4xxIsInItsApisEnvelopeAndNoRefusedOneChangesABalance()
    {
        var random = TestSeed.Create(output, nameof(TenThousandHostileRequestsGetNo5xxEvery4xxIsInItsApisEnvelopeAndNoRefusedOneChangesABalance));
        var world = await FuzzWorld.CreateAsync(server);
        var generator = new HostileRequests(random, world.Targets);
        var tally = new FuzzTally();
        var baseline = await world.SnapshotAsync(server);

        for (var sent = 0; sent < RequestCount; sent += BatchSize)
        {
            // Generated one after another before sending, so the sequence depends only on the seed.
            var batch = Enumerable.Range(0, BatchSize).Select(_ => generator.Next()).ToList();
            var replies = await ConsumptionLoad.ForEachAsync(batch, async request => (request, reply: await request.SendAsync(server.BaseAddress)), Parallelism);
            var accepted = false;
            foreach (var (request, reply) in replies)
            {
                tally.Record(request, reply);
                if (!request.IsRead && (int)reply.Status is >= 200 and < 300)
                {
                    accepted = true;
                    await world.UndoExpiringHoldAsync(server, request, reply);
                }
            }
            var after = await world.SnapshotAsync(server);
            if (accepted) tally.BatchesWithAcceptedChanges++;
            else tally.AssertUnchanged(baseline, after, replies.Select(pair => pair.request));
            baseline = after;
        }

        output.WriteLine(tally.Summary());
        Assert.True(tally.Failures.Count == 0, $"{tally.Failures.Count} requests broke the contract; the first:\n" + string.Join("\n", tally.Failures.Take(15)));
        Assert.Equal(RequestCount, tally.Total);
        await server.AssertLedgerVerifiedAsync();
    }
}

/// <summary>
/// The organizations the fuzz aims at. A and B (and a disabled one) are guarded: they may change only through
/// a request that was accepted, so after a batch of refusals their balances and ledgers must be as before.
/// A starts with nothing left to spend (70 consumed, 30 held) so that most spending attempts are refused.
/// </summary>
public sealed class FuzzWorld(FuzzTargets targets)
{
    public FuzzTargets Targets => targets;

    public static async Task<FuzzWorld> CreateAsync(TallyApi server)
    {
        var (a, aConsumption, aHold) = await SpentOrganizationAsync(server);
        var (b, bConsumption, bHold) = await SpentOrganizationAsync(server);
        var aReadOnly = await server.CreateKeyAsync(a.Id, "balance:read");
        var aWriteOnly = await server.CreateKeyAsync(a.Id, "usage:write");
        var aRevoked = await server.CreateKeyAsync(a.Id);
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{a.Id}/keys/{aRevoked.Id}")).Expect(HttpStatusCode.OK);
        var aAssistant = (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{a.Id}/assistants", new { name = "A bot" })).Expect(HttpStatusCode.Created).String("id");
        var disabled = await server.CreateOrganizationAsync();
        (await server.AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{disabled.Id}", new { status = "disabled" })).Expect(HttpStatusCode.OK);
        var deleted = await server.CreateOrganizationAsync();
        (await server.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{deleted.Id}")).Expect(HttpStatusCode.NoContent);
        var sacrificial = await server.CreateOrganizationAsync();
        var sacrificialAssistant = (await server.AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{sacrificial.Id}/assistants", new { name = "S bot" }))
            .Expect(HttpStatusCode.Created).String("id");
        return new FuzzWorld(new FuzzTargets(a, aReadOnly, aWriteOnly, aRevoked, aConsumption, aHold, aAssistant, b, bConsumption, bHold,
            disabled, deleted, sacrificial, sacrificialAssistant));
    }

    private static async Task<(TestOrganization Organization, string Consumption, string Hold)> SpentOrganizationAsync(TallyApi server)
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var consumption = (await server.ConsumeAsync(organization.Key, credits: 70)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", organization.Key.Bearer, new { credits = 30, idempotencyKey = "setup-hold", ttlSeconds = 86_400 }))
            .Expect(HttpStatusCode.Created).String("id");
        return (organization, consumption, hold);
    }

    /// <summary>Each guarded organization's balance and newest ledger entry, as the operator reads them.</summary>
    public async Task<string> SnapshotAsync(TallyApi server)
    {
        var text = new System.Text.StringBuilder();
        foreach (var organization in new[] { targets.A, targets.B, targets.Disabled })
        {
            text.Append((await server.AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}/balance")).Expect(HttpStatusCode.OK).Text).Append('\n');
            text.Append((await server.AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organization.Id}/ledger?limit=1")).Expect(HttpStatusCode.OK).Text).Append('\n');
        }
        return text.ToString();
    }

    /// <summary>
    /// A hold the fuzz placed (a mutation that stayed valid) would expire by itself later and change a balance
    /// in a batch of refusals; releasing it at once keeps every later change attributable to a request.
    /// </summary>
    public async Task UndoExpiringHoldAsync(TallyApi server, HostileRequest request, RawHttp.RawReply reply)
    {
        if (reply.Status != HttpStatusCode.Created || !request.RoutedPath.Equals("/v1/holds", StringComparison.OrdinalIgnoreCase)) return;
        var key = request.OrganizationId == targets.A.Id ? targets.A.Key : targets.B.Key;
        var holdId = reply.Json!["id"]!.GetValue<string>();
        (await server.CallAsync(HttpMethod.Post, $"/v1/holds/{holdId}/release", key.Bearer, new { idempotencyKey = "undo-" + holdId })).Expect(HttpStatusCode.Created);
    }
}

/// <summary>The fuzz's counts, and every answer that broke the contract.</summary>
public sealed class FuzzTally
{
    private readonly SortedDictionary<int, int> byStatus = new();

    public List<string> Failures { get; } = [];
    public int Total { get; private set; }
    public int RefusedByHttpParsing { get; private set; }
    public int EnvelopesChecked { get; private set; }
    public int Accepted { get; private set; }
    public int BatchesVerifiedUnchanged { get; private set; }
    public int BatchesWithAcceptedChanges { get; set; }

    public void Record(HostileRequest request, RawHttp.RawReply reply)
    {
        Total++;
        var status = (int)reply.Status;
        byStatus[status] = byStatus.GetValueOrDefault(status) + 1;
        if (!request.IsRead && status is >= 200 and < 300) Accepted++;
        if (status >= 500) Failures.Add($"{status} {reply.Text}: {request}");
        if (status is < 400 or >= 500) return;
        if (!reply.Headers.ContainsKey("x-request-id"))
        {
            // No request id: Kestrel's HTTP parser refused the bytes before any Tally code ran, so no envelope is possible.
            if (request.MayBeRefusedByHttpParsing && status is 400 or 414 or 431 && reply.Text.Length == 0) RefusedByHttpParsing++;
            else Failures.Add($"{status} without Tally's request id or envelope ({reply.Text}): {request}");
            return;
        }
        EnvelopesChecked++;
        var mismatch = Envelopes.Mismatch(Envelopes.ApiOf(request.RoutedPath), status, reply, headOnly: request.Method == "HEAD");
        if (mismatch is not null) Failures.Add($"{status} {mismatch} (routed {request.RoutedPath}): {reply.Text}: {request}");
    }

    public void AssertUnchanged(string before, string after, IEnumerable<HostileRequest> batch)
    {
        if (before == after) BatchesVerifiedUnchanged++;
        else Failures.Add("a batch of refused requests changed a guarded organization:\n" + before + "→\n" + after + "\n" + string.Join("\n", batch));
    }

    public string Summary() =>
        $"{Total} requests; by status: {string.Join(", ", byStatus.Select(pair => $"{pair.Key}: {pair.Value}"))}; "
        + $"{EnvelopesChecked} errors checked for their envelope; {RefusedByHttpParsing} refused by Kestrel's HTTP parser before Tally (no envelope possible); "
        + $"{Accepted} accepted changes (mutations that stayed valid); {BatchesVerifiedUnchanged} batches verified unchanged, "
        + $"{BatchesWithAcceptedChanges} batches with an accepted change re-read instead; {Failures.Count} failures.";
}
