using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Tally.Ledger.Engine;
using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Sqlite;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// docs/operations.md "Limits and overload" on the real process: far above its rate limit a key gets 429
/// rate_limited with Retry-After, memory stays bounded (also under a flood of distinct hostile credentials),
/// and the server serves again when the load stops.
/// </summary>
public sealed class OverloadTests(ITestOutputHelper output)
{
    private const int RatePerSecond = 50;
    private const int Clients = 32;
    private const int Requests = 12_000;

    /// <summary>Distinct hostile Authorization headers in the flood, each as large as a credential may usefully be.</summary>
    private const int HostileCredentials = 24_000;
    private const int HostileCredentialBytes = 16 * 1024;

    /// <summary>
    /// Growth of the resident set over the warmed-up server that counts as bounded: a few garbage collector
    /// segments and connection buffers, far below what keeping every request or credential would take.
    /// </summary>
    private const long ResidentGrowthBytesMax = 128L * 1024 * 1024;

    [Fact]
    public async Task FarAboveItsRateLimitAKeyGets429WithRetryAfterMemoryStaysBoundedAndTheServerRecovers()
    {
        await using var tally = await TallyProcess.StartAsync(new Dictionary<string, string> { ["TALLY_RATE_LIMIT_PER_SECOND"] = RatePerSecond.ToString() });
        var organization = await tally.CreateOrganizationAsync(creditsPerPeriod: 1_000_000_000);
        // Warm up the way the load will run, so the baseline includes the JIT, the pools and the page cache.
        await Task.WhenAll(Enumerable.Range(0, 40).Select(index => tally.ConsumeAsync(organization.Key, idempotencyKey: $"warm-{index}")));
        var baseline = tally.WorkingSetBytes();
        var peak = baseline;
        using var sampling = new CancellationTokenSource();
        var sampler = Task.Run(async () =>
        {
            while (!sampling.IsCancellationRequested)
            {
                peak = Math.Max(peak, tally.WorkingSetBytes());
                await Task.Delay(20);
            }
        });

        var elapsed = Stopwatch.StartNew();
        var outcomes = await FloodAsync(tally, organization.Key);
        elapsed.Stop();
        output.WriteLine($"after the key flood: peak {peak / 1024 / 1024} MiB, now {tally.WorkingSetBytes() / 1024 / 1024} MiB");
        var flood = await FloodWithDistinctCredentialsAsync(tally);
        output.WriteLine($"after the credential flood: peak {peak / 1024 / 1024} MiB, now {tally.WorkingSetBytes() / 1024 / 1024} MiB");
        sampling.Cancel();
        await sampler;

        var created = outcomes.Count(outcome => outcome.Status == HttpStatusCode.Created);
        var limited = outcomes.Where(outcome => outcome.Status == HttpStatusCode.TooManyRequests).ToList();
        var other = outcomes.Where(outcome => outcome.Status is not (HttpStatusCode.Created or HttpStatusCode.TooManyRequests)).ToList();
        output.WriteLine($"{outcomes.Count} requests from {Clients} clients on one key: {created} created, {limited.Count} refused with 429, {other.Count} other; "
            + $"{flood.Count} requests with distinct {HostileCredentialBytes}-byte credentials: {string.Join(", ", flood.GroupBy(status => (int)status).Select(group => $"{group.Key}: {group.Count()}"))}; "
            + $"resident memory {baseline / 1024 / 1024} MiB warmed up, {peak / 1024 / 1024} MiB at most under load");
        // Reported, not asserted (tests never assert times): how long a refusal takes to arrive.
        var refusalMilliseconds = limited.Select(outcome => outcome.Milliseconds).Order().ToList();
        if (refusalMilliseconds.Count > 0)
        {
            output.WriteLine($"429 answered in {refusalMilliseconds[refusalMilliseconds.Count / 2]:F1} ms (median), "
                + $"{refusalMilliseconds[refusalMilliseconds.Count * 99 / 100]:F1} ms (99th percentile) with {Clients} clients on 2 cores");
        }
        Assert.True(other.Count == 0, "every answer is 201 or 429; got " + string.Join(", ", other.Take(5)));
        Assert.True(limited.Count > 0, "the key went far above its limit and must have been refused");
        Assert.All(limited, outcome => Assert.True(outcome.RetryAfter == "1" && outcome.Code == "rate_limited", $"429 with Retry-After 1 and rate_limited: {outcome}"));
        // The token bucket lets through its burst (twice the rate) and then the rate, whatever the load.
        var allowed = 2 * RatePerSecond + RatePerSecond * (long)Math.Ceiling(elapsed.Elapsed.TotalSeconds + 1);
        Assert.True(created <= allowed, $"{created} accepted in {elapsed.Elapsed.TotalSeconds:F1} s; the limit allows at most {allowed}");
        Assert.All(flood, status => Assert.True(status is HttpStatusCode.Unauthorized or HttpStatusCode.TooManyRequests, $"a hostile credential gets 401 or 429, not {status}"));
        Assert.True(peak - baseline <= ResidentGrowthBytesMax,
            $"resident memory grew by {(peak - baseline) / 1024 / 1024} MiB under load (from {baseline / 1024 / 1024} MiB); bounded means at most {ResidentGrowthBytesMax / 1024 / 1024} MiB");

        await AssertRecoversAsync(tally, organization.Key);
        Assert.Equal(40 + created + RecoveryRequests, (await tally.SnapshotAsync(organization.Id)).Used);
        await tally.AssertLedgerVerifiedAsync();
    }

    private const int RecoveryRequests = 20;

    private sealed record Outcome(HttpStatusCode Status, string? RetryAfter, string? Code, double Milliseconds);

    private static async Task<List<Outcome>> FloodAsync(TallyApi tally, TestKey key)
    {
        var outcomes = new ConcurrentQueue<Outcome>();
        var next = -1;

        async Task RunClientAsync()
        {
            using var http = tally.CreateClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 });
            http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", key.Bearer);
            int index;
            while ((index = Interlocked.Increment(ref next)) < Requests)
            {
                var started = Stopwatch.GetTimestamp();
                using var response = await http.PostAsJsonAsync("/v1/consumptions", new { credits = 1, idempotencyKey = $"flood-{index}" });
                var body = await Reply.ReadAsync(response);
                outcomes.Enqueue(new Outcome(response.StatusCode, response.Headers.RetryAfter?.ToString(), body.Json?["code"]?.GetValue<string>(),
                    Stopwatch.GetElapsedTime(started).TotalMilliseconds));
            }
        }

        await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => Task.Run(RunClientAsync)));
        return [.. outcomes];
    }

    /// <summary>Requests each with a different large Authorization header: each is a rate-limit partition of its own.</summary>
    private static async Task<List<HttpStatusCode>> FloodWithDistinctCredentialsAsync(TallyApi tally)
    {
        var statuses = new ConcurrentQueue<HttpStatusCode>();
        var next = -1;

        async Task RunClientAsync()
        {
            using var http = tally.CreateClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 });
            int index;
            while ((index = Interlocked.Increment(ref next)) < HostileCredentials)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/balance");
                // Half as large as a header may be, half shaped like a real secret: both are unknown, so 401 (or 429).
                var credential = index % 2 == 0 ? $"Bearer sk_{index:D8}{new string('x', HostileCredentialBytes)}" : $"Bearer sk_{index:D8}{Guid.NewGuid():N}";
                request.Headers.TryAddWithoutValidation("Authorization", credential);
                using var response = await http.SendAsync(request);
                statuses.Enqueue(response.StatusCode);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, Clients).Select(_ => Task.Run(RunClientAsync)));
        return [.. statuses];
    }

    /// <summary>Once the load stops the bucket refills: a request goes through, and after a second a run of them does.</summary>
    private static async Task AssertRecoversAsync(TallyApi tally, TestKey key)
    {
        for (var attempt = 0; ; attempt++)
        {
            var reply = await tally.ConsumeAsync(key, idempotencyKey: $"recovery-probe-{attempt}");
            if (reply.Status == HttpStatusCode.Created) break;
            Assert.True(reply.Status == HttpStatusCode.TooManyRequests && attempt < 100, $"after the load a consumption succeeds again; got {(int)reply.Status} {reply.Text}");
            await Task.Delay(100);
        }
        await Task.Delay(TimeSpan.FromSeconds(1));
        for (var index = 1; index < RecoveryRequests; index++)
        {
            (await tally.ConsumeAsync(key, idempotencyKey: $"recovery-{index}")).Expect(HttpStatusCode.Created);
        }
    }
}

/// <summary>
/// A server whose writer takes one command per batch and queues at most eight, so a stuck writer's queue is
/// full after ten requests (two in the writer) instead of 32,768.
/// </summary>
public sealed class SmallQueueServerFixture : TallyServerFixture
{
    public const int QueueCapacity = 8;

    protected override void Configure(WebApplicationBuilder builder) =>
        builder.Services.AddSingleton(services => new LedgerEngine(services.GetRequiredService<ILedgerStore>(), services.GetRequiredService<TimeProvider>(),
            new LedgerEngineOptions { QueueCapacity = QueueCapacity, BatchSizeMax = 1 }));
}

/// <summary>
/// docs/operations.md: the writer's queue is bounded; when it is full the server answers 503 unavailable with
/// Retry-After at once rather than queueing, and what it did accept is committed once the writer moves again.
/// The writer is stuck for real: the test holds SQLite's write lock on the server's own journal file.
/// </summary>
public sealed class WriterQueueTests(SmallQueueServerFixture server, ITestOutputHelper output) : IClassFixture<SmallQueueServerFixture>
{
    private const int Attempts = 64;

    /// <summary>How long to wait for the refusals; well under the 30 s the stuck writer waits for the lock before failing.</summary>
    private static readonly TimeSpan RefusalsTimeout = TimeSpan.FromSeconds(20);

    /// <summary>Time for each of the first commands to reach the writer before the next is sent.</summary>
    private static readonly TimeSpan FirstCommandWait = TimeSpan.FromMilliseconds(500);

    /// <summary>Commands out of the queue while the journal is stuck: the batch being journaled, and the next one, decided.</summary>
    private const int WriterHolds = 2;

    [Fact]
    public async Task WithTheWriterStuckAndItsQueueFullConsumptionsAreRefusedAtOnceWith503AndWhatWasQueuedCommitsAfterwards()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 1_000);
        (await server.ConsumeAsync(organization.Key, idempotencyKey: "warm-up")).Expect(HttpStatusCode.Created);
        await using var blocker = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = Path.Combine(server.DataDirectory, SqliteLedgerStore.JournalFileName), Pooling = false }.ToString());
        await blocker.OpenAsync();
        await ExecuteAsync(blocker, "BEGIN IMMEDIATE");

        // The first two commands go alone, so that the writer (batches of one here) takes them before the others
        // arrive: it sticks on the first one's journal commit, and decides the second meanwhile, which then waits for
        // the first. QueueCapacity then wait behind them, and every other one must be refused at once. (Sent together,
        // the others could fill the queue before the writer took the first two, and more were refused.)
        var engine = server.Services.GetRequiredService<LedgerEngine>();
        var requests = new List<Task<Reply>>();
        foreach (var index in (int[])[0, 1])
        {
            requests.Add(server.ConsumeAsync(organization.Key, idempotencyKey: $"queued-{index}"));
            await Task.Delay(FirstCommandWait);
        }
        requests.AddRange(Enumerable.Range(2, Attempts - 2).Select(index => server.ConsumeAsync(organization.Key, idempotencyKey: $"queued-{index}")));
        var deadline = Stopwatch.StartNew();
        var refusedCount = Attempts - WriterHolds - SmallQueueServerFixture.QueueCapacity;
        while (requests.Count(request => request.IsCompleted) < refusedCount && deadline.Elapsed < RefusalsTimeout) await Task.Delay(20);
        Assert.True(deadline.Elapsed < RefusalsTimeout, "the refusals did not come while the writer was stuck");
        var answeredWhileStuck = requests.Where(request => request.IsCompleted).Select(request => request.Result).ToList();
        // The engine's own count: /metrics of an in-process server also shows the engines of the other test classes.
        var queueDepth = engine.QueueDepth;
        await ExecuteAsync(blocker, "ROLLBACK");
        var replies = await Task.WhenAll(requests);

        Assert.Equal(refusedCount, answeredWhileStuck.Count);
        Assert.All(answeredWhileStuck, reply =>
        {
            reply.ExpectProblem(HttpStatusCode.ServiceUnavailable, "unavailable");
            Assert.Equal("1", reply.Headers.RetryAfter?.ToString());
        });
        Assert.Equal(SmallQueueServerFixture.QueueCapacity, queueDepth);
        var created = replies.Count(reply => reply.Status == HttpStatusCode.Created);
        Assert.Equal(WriterHolds + SmallQueueServerFixture.QueueCapacity, created);
        Assert.Equal(Attempts, created + replies.Count(reply => reply.Status == HttpStatusCode.ServiceUnavailable));
        Assert.Equal(1 + created, (await server.SnapshotAsync(organization.Id)).Used);
        // A refusal is not remembered: the same key later creates the consumption (201, not a replay).
        var refusedKeys = Enumerable.Range(0, Attempts).Where(index => replies[index].Status == HttpStatusCode.ServiceUnavailable).Select(index => $"queued-{index}").ToList();
        foreach (var key in refusedKeys) (await server.ConsumeAsync(organization.Key, idempotencyKey: key)).Expect(HttpStatusCode.Created);
        Assert.Equal(1 + Attempts, (await server.SnapshotAsync(organization.Id)).Used);
        output.WriteLine($"writer stuck on the database lock: {answeredWhileStuck.Count} of {Attempts} refused with 503 while it was, queue depth {queueDepth}; "
            + $"{created} committed once it moved; the {refusedKeys.Count} refused keys created afterwards");
        await server.AssertLedgerVerifiedAsync();
    }

    private static async Task ExecuteAsync(SqliteConnection connection, string sql)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        await command.ExecuteNonQueryAsync();
    }
}
