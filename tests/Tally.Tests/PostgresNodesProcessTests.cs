using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// docs/scaling.md through real processes: three `tally serve --store postgres` nodes on one PostgreSQL
/// database, each on its own port with the same operator key, and clients spread over all three. No overdraft
/// across nodes (SPEC §2 rule 1), one idempotency key charged once whichever nodes it reaches (rule 2), and
/// every acknowledged consumption kept when a node is killed while the others keep serving (rule 3).
/// </summary>
/// <remarks>Each test starts its own three nodes on its own database; the tests of one class run one after the other.</remarks>
public sealed class PostgresNodesProcessTests(PostgresFixture postgres, ITestOutputHelper output) : IClassFixture<PostgresFixture>
{
    private const int NodeCount = 3;

    /// <summary>Requests in flight while replaying or sending a fixed set: enough for the nodes' writers to batch them.</summary>
    private const int ReplayParallelism = 16;

    [PostgresFact]
    public async Task SixtyFourClientsSpreadOverThreeNodesSpendingOneCreditAThousandTimesGetExactlyFiveHundred201sAndEveryNodeReportsTheBalanceSpent()
    {
        const int clients = 64;
        const int credits = 500;
        const int attempts = 1_000;
        await using var nodes = await Nodes.StartAsync(postgres, "tally_nodes_overdraft", output);
        var organization = await nodes[0].CreateOrganizationAsync(creditsPerPeriod: credits);
        var outcomes = new ConcurrentBag<(int Node, HttpStatusCode Status, string? Code, bool Replayed)>();
        var next = -1;

        async Task RunClientAsync(int client)
        {
            // Client c talks to node c mod 3 over its own connection, as backends behind a load balancer would.
            var node = client % NodeCount;
            using var http = nodes[node].CreateClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 });
            http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", organization.Key.Bearer);
            int attempt;
            while ((attempt = Interlocked.Increment(ref next)) < attempts)
            {
                using var response = await http.PostAsJsonAsync("/v1/consumptions", new { credits = 1, idempotencyKey = $"message-{attempt}" });
                var body = JsonNode.Parse(await response.Content.ReadAsStringAsync());
                outcomes.Add((node, response.StatusCode, body?["code"]?.GetValue<string>(), response.Headers.Contains("Idempotent-Replayed")));
            }
        }

        await Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(() => RunClientAsync(client))));

        Assert.Equal(attempts, outcomes.Count);
        var byStatus = outcomes.GroupBy(outcome => (outcome.Status, outcome.Code)).ToDictionary(group => group.Key, group => group.Count());
        var summary = string.Join(", ", byStatus.Select(pair => $"{(int)pair.Key.Status} {pair.Key.Code}: {pair.Value}"));
        var perNode = string.Join(", ", outcomes.GroupBy(outcome => outcome.Node).OrderBy(group => group.Key)
            .Select(group => $"node {group.Key}: {group.Count(outcome => outcome.Status == HttpStatusCode.Created)} created of {group.Count()}"));
        output.WriteLine($"{summary}; {perNode}");
        Assert.True(byStatus.GetValueOrDefault((HttpStatusCode.Created, null)) == credits, "expected exactly 500 created; got " + summary);
        Assert.True(byStatus.GetValueOrDefault((HttpStatusCode.PaymentRequired, "insufficient_credits")) == attempts - credits,
            "expected the other 500 refused with 402 insufficient_credits; got " + summary);
        Assert.DoesNotContain(outcomes, outcome => outcome.Replayed);
        Assert.All(Enumerable.Range(0, NodeCount), node => Assert.Contains(outcomes, outcome => outcome.Node == node));

        for (var node = 0; node < NodeCount; node++)
        {
            Assert.Equal("{\"Data\":{\"Total\":500,\"Used\":500,\"Remain\":0},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}",
                await nodes[node].CreditsUsageTextAsync(organization.Key.SecretKey));
        }
        var snapshot = await nodes[1].SnapshotAsync(organization.Id);
        Assert.Equal(0, snapshot.Remaining);
        Assert.Equal(credits, snapshot.Used);
        Assert.Equal(1 + credits, snapshot.LedgerEntries); // the allowance grant and one entry per accepted consumption
        await nodes.AssertVerifiedAsync();
    }

    /// <remarks>
    /// What happens is exact, not "one of several": every node locks the organization's row before it looks
    /// the key up (in the same READ COMMITTED transaction), so the nodes take turns and each later one finds
    /// the first one's committed record. The UNIQUE constraint on (organization_id, key) is never reached, so
    /// no node answers 503: one 201, and two 200 replays with the same body.
    /// </remarks>
    [PostgresFact]
    public async Task OneIdempotencyKeySentToAllThreeNodesAtOnceIsCreatedByOneAndReplayedByTheOthersAndChargedOnce()
    {
        const int rounds = 6;
        const int keysPerRound = 8;
        const long creditsPerConsumption = 3;
        await using var nodes = await Nodes.StartAsync(postgres, "tally_nodes_idempotency", output);
        var organization = await nodes[0].CreateOrganizationAsync(creditsPerPeriod: 1_000);
        var ids = new Dictionary<string, string>(StringComparer.Ordinal);
        var creators = new int[NodeCount];

        for (var round = 0; round < rounds; round++)
        {
            // Every key of the round goes to every node at once: 24 requests in flight, three per key.
            var keys = Enumerable.Range(0, keysPerRound).Select(index => $"round{round}-key{index}").ToList();
            var sent = keys.SelectMany(key => Enumerable.Range(0, NodeCount).Select(node => (Key: key, Node: node))).ToList();
            var replies = await Task.WhenAll(sent.Select(request => Task.Run(async () =>
                (request.Key, request.Node, Reply: await nodes[request.Node].ConsumeAsync(organization.Key, creditsPerConsumption, request.Key)))));

            foreach (var group in replies.GroupBy(reply => reply.Key))
            {
                var answers = string.Join("; ", group.Select(reply => $"node {reply.Node}: {(int)reply.Reply.Status} replayed={reply.Reply.IsReplay} {reply.Reply.Text}"));
                var created = group.Where(reply => reply.Reply.Status == HttpStatusCode.Created).ToList();
                Assert.True(created.Count == 1, $"{group.Key}: expected exactly one 201; got {answers}");
                Assert.False(created[0].Reply.IsReplay, $"{group.Key}: the 201 is not a replay; got {answers}");
                var replayed = group.Where(reply => reply.Reply.Status == HttpStatusCode.OK && reply.Reply.IsReplay).ToList();
                Assert.True(replayed.Count == NodeCount - 1, $"{group.Key}: expected the two other nodes to answer 200 with Idempotent-Replayed: true; got {answers}");
                var id = created[0].Reply.String("id");
                Assert.True(replayed.All(reply => reply.Reply.String("id") == id && reply.Reply.Text == created[0].Reply.Text),
                    $"{group.Key}: every replay carries the created consumption's id and body; got {answers}");
                ids.Add(group.Key, id);
                creators[created[0].Node]++;
            }
        }

        output.WriteLine($"{ids.Count} keys, each sent to {NodeCount} nodes at once; created by node 0/1/2: {string.Join('/', creators)}");
        Assert.Equal(ids.Count, ids.Values.Distinct().Count());
        for (var node = 0; node < NodeCount; node++)
        {
            var snapshot = await nodes[node].SnapshotAsync(organization.Id);
            Assert.Equal(ids.Count * creditsPerConsumption, snapshot.Used);
            Assert.Equal(1_000 - ids.Count * creditsPerConsumption, snapshot.Remaining);
        }
        var consumed = (await nodes[2].LedgerEntriesAsync(organization.Id))
            .Where(entry => entry["kind"]!.GetValue<string>() == "consume")
            .GroupBy(entry => entry["referenceId"]!.GetValue<string>())
            .ToDictionary(group => group.Key, group => -group.Sum(entry => entry["credits"]!.GetValue<long>()));
        Assert.Equal(ids.Values.Order(StringComparer.Ordinal), consumed.Keys.Order(StringComparer.Ordinal));
        Assert.All(consumed.Values, credits => Assert.Equal(creditsPerConsumption, credits));
        await nodes.AssertVerifiedAsync();
    }

    /// <remarks>
    /// The load runs on all three nodes until the ledger shows it well under way, then one node, chosen by the
    /// seed, is killed with SIGKILL. The load on the other two keeps running, and after the kill each of them
    /// is sent a further fixed set of consumptions, so "they keep serving" rests on requests sent after the kill.
    /// </remarks>
    [PostgresFact]
    public async Task ANodeKilledUnderLoadLeavesTheOtherTwoServingAndEveryAcknowledgedConsumptionPresentOnceOnThem()
    {
        const int clientsPerNode = 16;
        const long usedBeforeKill = 200;
        const int consumptionsAfterKillPerSurvivor = 60;
        var random = TestSeed.Create(output, nameof(ANodeKilledUnderLoadLeavesTheOtherTwoServingAndEveryAcknowledgedConsumptionPresentOnceOnThem));
        await using var nodes = await Nodes.StartAsync(postgres, "tally_nodes_kill", output);
        var organization = await nodes[0].CreateOrganizationAsync(creditsPerPeriod: 1_000_000_000);
        var victim = random.Next(NodeCount);
        var survivors = Enumerable.Range(0, NodeCount).Where(node => node != victim).ToArray();

        using var stop = new CancellationTokenSource();
        var loads = Enumerable.Range(0, NodeCount)
            .Select(node => ConsumptionLoad.RunAsync(nodes[node], organization.Key, $"load-node{node}", clientsPerNode, stop.Token))
            .ToArray();
        try
        {
            await WaitUntilUsedAsync(nodes[survivors[0]], organization.Id, usedBeforeKill, loads);
            await nodes[victim].KillAsync();

            // Sent only after the victim is gone, to each survivor, while the survivors' own load goes on.
            var afterKill = await ConsumptionLoad.ForEachAsync(
                survivors.SelectMany(node => Enumerable.Range(0, consumptionsAfterKillPerSurvivor).Select(index => (Node: node, Key: $"after-kill-node{node}-{index}"))),
                async request => (request.Node, request.Key, Reply: await ConsumptionLoad.ReplayAsync(nodes[request.Node], organization.Key, request.Key)),
                parallelism: ReplayParallelism);
            foreach (var (node, key, reply) in afterKill)
            {
                Assert.True(reply.Status == HttpStatusCode.Created && !reply.IsReplay,
                    $"after the kill of node {victim}, surviving node {node} must create {key} (201); got {(int)reply.Status} {reply.Text}");
            }
            stop.Cancel();
            await Task.WhenAll(loads);

            var victimAttempts = loads[victim].Result;
            var survivorAttempts = survivors.SelectMany(node => loads[node].Result).ToList();
            var notCreated = survivorAttempts.Where(attempt => !attempt.Acknowledged).ToList();
            Assert.True(notCreated.Count == 0,
                $"every consumption sent to a surviving node, before and after the kill, is a 201; got {string.Join(", ", notCreated.Take(5))}");
            var refused = victimAttempts.Where(attempt => attempt.Status is not null && !attempt.Acknowledged).ToList();
            Assert.True(refused.Count == 0, $"every answer node {victim} gave before its kill is a 201; got {string.Join(", ", refused.Take(5))}");

            var acknowledged = victimAttempts.Concat(survivorAttempts).Where(attempt => attempt.Acknowledged)
                .Select(attempt => (attempt.IdempotencyKey, Id: attempt.ConsumptionId!))
                .Concat(afterKill.Select(request => (IdempotencyKey: request.Key, Id: request.Reply.String("id"))))
                .ToList();
            var unanswered = victimAttempts.Where(attempt => attempt.Failure is not null).ToList();
            var usedBeforeReplays = await UsedAsync(nodes[survivors[0]], organization.Id);

            output.WriteLine($"node {victim} killed once the ledger showed {usedBeforeKill} used; {acknowledged.Count} acknowledged, "
                + $"{unanswered.Count} cut off by the kill, {usedBeforeReplays} used before the replays");

            // Every acknowledged key, whichever node acknowledged it, replays on a survivor, alternately on one and
            // the other, so about half of each survivor's own consumptions replay on the other survivor.
            var replays = await ConsumptionLoad.ForEachAsync(acknowledged.Select((consumption, index) => (consumption, index)), async item =>
                (item.consumption, Reply: await ConsumptionLoad.ReplayAsync(nodes[survivors[item.index % survivors.Length]], organization.Key, item.consumption.IdempotencyKey)),
                parallelism: ReplayParallelism);
            foreach (var (consumption, reply) in replays)
            {
                Assert.True(reply.Status == HttpStatusCode.OK && reply.IsReplay && reply.String("id") == consumption.Id,
                    $"acknowledged {consumption.IdempotencyKey} ({consumption.Id}) must replay on a survivor with 200, Idempotent-Replayed and the same id; got {(int)reply.Status} {reply.Text}");
            }

            // A request the kill cut off either committed (its replay is a 200) or left no trace (created now, 201).
            var present = acknowledged.ToDictionary(consumption => consumption.IdempotencyKey, consumption => consumption.Id, StringComparer.Ordinal);
            var committedUnanswered = 0;
            foreach (var attempt in unanswered)
            {
                var reply = await ConsumptionLoad.ReplayAsync(nodes[survivors[0]], organization.Key, attempt.IdempotencyKey);
                var wasCommitted = reply.Status == HttpStatusCode.OK && reply.IsReplay;
                Assert.True(wasCommitted || reply.Status == HttpStatusCode.Created,
                    $"unanswered {attempt.IdempotencyKey} must replay with 200 or be created with 201; got {(int)reply.Status} {reply.Text}");
                if (wasCommitted) committedUnanswered++;
                present.Add(attempt.IdempotencyKey, reply.String("id"));
            }

            var summary = $"node {victim} killed once the ledger showed {usedBeforeKill} used: {acknowledged.Count} acknowledged "
                + $"({victimAttempts.Count(attempt => attempt.Acknowledged)} by node {victim}, {survivorAttempts.Count} by the survivors' load, "
                + $"{afterKill.Length} sent after the kill), {unanswered.Count} cut off by the kill ({committedUnanswered} had committed)";
            output.WriteLine(summary);
            Assert.True(usedBeforeReplays == acknowledged.Count + committedUnanswered,
                $"{summary}: used before the replays is {usedBeforeReplays}, expected one credit per consumption present, {acknowledged.Count + committedUnanswered}");
            Assert.Equal(present.Count, present.Values.Distinct(StringComparer.Ordinal).Count());
            foreach (var survivor in survivors) Assert.Equal(present.Count, await UsedAsync(nodes[survivor], organization.Id));

            var consumed = (await nodes[survivors[1]].LedgerEntriesAsync(organization.Id))
                .Where(entry => entry["kind"]!.GetValue<string>() == "consume")
                .GroupBy(entry => entry["referenceId"]!.GetValue<string>())
                .ToDictionary(group => group.Key, group => -group.Sum(entry => entry["credits"]!.GetValue<long>()));
            Assert.True(consumed.Count == present.Count, $"{summary}: the ledger has {consumed.Count} consumptions; {present.Count} idempotency keys were consumed");
            Assert.True(consumed.Values.All(credits => credits == 1), $"{summary}: a consumption was charged more than its one credit");
            Assert.True(present.Values.All(consumed.ContainsKey), $"{summary}: a consumption answered with an id is missing from the ledger");
            await nodes.AssertVerifiedAsync();
        }
        finally
        {
            // On a failed assertion, the load must not outlive the test.
            await stop.CancelAsync();
            try { await Task.WhenAll(loads); } catch (Exception) when (loads.Any(load => load.IsFaulted)) { }
        }
    }

    /// <remarks>
    /// A write's authentication reads only the organization's status, and a balance read its whole state; both come
    /// from the database on every request, so a change made through one node holds at once on the others.
    /// </remarks>
    [PostgresFact]
    public async Task AnOrganizationDisabledThroughOneNodeIsRefusedWith404ByTheOthersOnEveryRouteUntilEnabledAgain()
    {
        await using var nodes = await Nodes.StartAsync(postgres, "tally_nodes_disabled", output);
        var organization = await nodes[0].CreateOrganizationAsync(creditsPerPeriod: 10);
        var consumption = (await nodes[1].ConsumeAsync(organization.Key, idempotencyKey: "before")).Expect(HttpStatusCode.Created).String("id");

        (await nodes[0].AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{organization.Id}", new { status = "disabled" })).Expect(HttpStatusCode.OK);
        foreach (var node in new[] { nodes[1], nodes[2] })
        {
            var refusals = new[]
            {
                await node.CallAsync(HttpMethod.Post, "/v1/consumptions", organization.Key.Bearer, new { credits = 1, idempotencyKey = "while-disabled" }),
                await node.CallAsync(HttpMethod.Post, $"/v1/consumptions/{consumption}/refunds", organization.Key.Bearer, new { credits = 1, idempotencyKey = "refund" }),
                await node.CallAsync(HttpMethod.Post, "/v1/holds", organization.Key.Bearer, new { credits = 1, idempotencyKey = "hold" }),
                await node.CallAsync(HttpMethod.Get, "/v1/balance", organization.Key.Bearer),
                await node.CallAsync(HttpMethod.Get, "/v1/ledger", organization.Key.Bearer),
            };
            Assert.All(refusals, reply => Assert.Equal("The organization was not found or is disabled.", reply.Expect(HttpStatusCode.NotFound).String("detail")));
        }

        (await nodes[0].AdminAsync(HttpMethod.Patch, $"/v1/admin/organizations/{organization.Id}", new { status = "active" })).Expect(HttpStatusCode.OK);
        (await nodes[2].ConsumeAsync(organization.Key, idempotencyKey: "after")).Expect(HttpStatusCode.Created);
        Assert.Equal(2, (await nodes[1].BalanceAsync(organization.Key))["used"]!.GetValue<long>());
        await nodes.AssertVerifiedAsync();
    }

    private static async Task<long> UsedAsync(TallyApi node, string organizationId) =>
        (await node.AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organizationId}/balance")).Expect(HttpStatusCode.OK).Long("used");

    /// <summary>Polls the balance until <paramref name="used"/> credits are spent; fails if a load ends first (a client lost its node).</summary>
    private static async Task WaitUntilUsedAsync(TallyApi node, string organizationId, long used, Task<IReadOnlyList<Attempt>>[] loads)
    {
        while (await UsedAsync(node, organizationId) < used)
        {
            if (loads.FirstOrDefault(load => load.IsCompleted) is { } ended)
            {
                var failures = ended.IsCompletedSuccessfully ? string.Join(", ", ended.Result.Where(attempt => attempt.Failure is not null).Take(3)) : ended.Exception?.ToString();
                Assert.Fail($"a load ended before the kill: {failures}");
            }
            await Task.Delay(20);
        }
    }

    /// <summary>Three `tally serve --store postgres` processes on one new database, started at once (the first migrates, the others wait on its advisory lock).</summary>
    private sealed class Nodes : IAsyncDisposable
    {
        private readonly TallyProcess[] processes;
        private readonly ITestOutputHelper output;

        private Nodes(TallyProcess[] processes, ITestOutputHelper output)
        {
            this.processes = processes;
            this.output = output;
        }

        public TallyProcess this[int node] => processes[node];

        public static async Task<Nodes> StartAsync(PostgresFixture postgres, string database, ITestOutputHelper output)
        {
            var connection = postgres.CreateDatabase(database);
            var nodes = new Nodes(
                [.. Enumerable.Range(0, NodeCount).Select(_ => TallyProcess.Create(arguments: ["--store", "postgres", "--connection", connection]))],
                output);
            try
            {
                await Task.WhenAll(nodes.processes.Select(process => process.StartAsync()));
            }
            catch
            {
                await nodes.DisposeAsync();
                throw;
            }
            return nodes;
        }

        /// <summary>Every node still running reports the whole database's ledger clean.</summary>
        public async Task AssertVerifiedAsync()
        {
            foreach (var process in processes.Where(process => process.IsRunning)) await process.AssertLedgerVerifiedAsync();
        }

        public async ValueTask DisposeAsync()
        {
            for (var node = 0; node < processes.Length; node++)
            {
                // Each node's warnings and errors (a failed batch, a lost connection), for a failure's diagnosis.
                var notable = processes[node].Output.Split('\n', StringSplitOptions.RemoveEmptyEntries)
                    .Where(line => !line.Contains("\"LogLevel\":\"Information\"", StringComparison.Ordinal) && !line.Contains("\"LogLevel\":\"Debug\"", StringComparison.Ordinal));
                foreach (var line in notable.TakeLast(20)) output.WriteLine($"node {node}: {line}");
                await processes[node].DisposeAsync();
            }
        }
    }
}
