using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Logging;
using Npgsql;
using Tally.Hosting;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// docs/scaling.md: a node that loses PostgreSQL (a database restart, a network failure) answers 503 with
/// Retry-After, in each API's envelope, not 500 (which docs/errors.md keeps for bugs), and serves again by itself.
/// The node reaches PostgreSQL through a TCP forwarder that the test cuts (every connection closed, new ones
/// refused) and restores.
/// </summary>
public sealed class PostgresOutageTests(PostgresFixture postgres) : IClassFixture<PostgresFixture>
{
    [PostgresFact]
    public async Task ANodeWhoseConnectionsAreCutAnswers503NeverA500AndRecoversByItself()
    {
        await using var node = await Node.StartAsync(postgres, "tally_outage");
        var path = node.Path;
        var organization = await node.CreateOrganizationAsync(creditsPerPeriod: 100);
        // Keys never used yet are not cached: authenticating them reads the database.
        var keys = new List<TestKey>();
        for (var index = 0; index < 3; index++) keys.Add(await node.CreateKeyAsync(organization.Id));

        await path.CutAsync();
        var answers = new List<Reply>();
        foreach (var key in keys)
        {
            answers.Add(await node.CallAsync(HttpMethod.Get, "/v1/balance", key.Bearer));
            answers.Add(await node.CallAsync(HttpMethod.Get, "/api/v1/agents/check-balance", key.Bearer));
            answers.Add(await node.CallAsync(HttpMethod.Post, "/v1/consumptions", key.Bearer, new { credits = 1, idempotencyKey = Guid.NewGuid().ToString() }));
        }

        Assert.All(answers, answer => Assert.True(answer.Status is HttpStatusCode.OK or HttpStatusCode.Created or HttpStatusCode.ServiceUnavailable,
            $"{answer.Status}: {answer.Text}"));
        var unavailable = answers.Where(answer => answer.Status == HttpStatusCode.ServiceUnavailable).ToList();
        Assert.NotEmpty(unavailable);
        Assert.All(unavailable, answer => Assert.Equal("1", answer.Headers.RetryAfter?.ToString()));
        // In check-balance's envelope too, the message says the store did not answer, not the seed's text for a 500.
        Assert.All(unavailable, answer => Assert.DoesNotContain("Internal server error", answer.Text));
        // Served again once the path is back, without a restart, from the first request on: a request that meets a
        // connection the cut killed runs again on a new one (the next test), and the ledger adds up.
        path.Restore();
        (await node.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);
        (await node.CallAsync(HttpMethod.Get, "/v1/balance", keys[0].Bearer)).Expect(HttpStatusCode.OK);
        (await node.ConsumeAsync(keys[0], idempotencyKey: "after-the-cut")).Expect(HttpStatusCode.Created);
        await node.AssertLedgerVerifiedAsync();
    }

    [PostgresFact]
    public async Task AfterTheDatabaseDroppedEveryConnectionOfAnIdleNodeItsNextRequestsSucceedOnNewOnes()
    {
        await using var node = await Node.StartAsync(postgres, "tally_dropped");
        var organization = await node.CreateOrganizationAsync(creditsPerPeriod: 100);
        // Requests at once, so that the pool holds several connections besides the writer's.
        var warm = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => node.CallAsync(HttpMethod.Get, "/v1/balance", organization.Key.Bearer)));
        Assert.All(warm, reply => reply.Expect(HttpStatusCode.OK));
        (await node.ConsumeAsync(organization.Key, idempotencyKey: "before")).Expect(HttpStatusCode.Created);

        // What a database restart does to a node that sends nothing meanwhile: every connection it holds is closed,
        // and new ones are accepted again.
        await node.Path.CutAsync();
        node.Path.Restore();

        // Each first use meets a dead connection; none of them may cost the caller a 503.
        (await node.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);
        Assert.Equal(99, (await node.CallAsync(HttpMethod.Get, "/v1/balance", organization.Key.Bearer)).Expect(HttpStatusCode.OK).Long("remaining"));
        Assert.Equal(98, (await node.ConsumeAsync(organization.Key, idempotencyKey: "after")).Expect(HttpStatusCode.Created).Long("remaining"));
        (await node.CallAsync(HttpMethod.Get, "/v1/usage", organization.Key.Bearer)).Expect(HttpStatusCode.OK);
        await node.AssertLedgerVerifiedAsync();
    }

    [PostgresFact]
    public async Task ReadyzAnswers503WhileTheDatabaseHangsInsteadOfHangingWithIt()
    {
        await using var node = await Node.StartAsync(postgres, "tally_hang");
        var path = node.Path;
        (await node.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);

        // The database stops answering on the connections the node holds (a frozen host): a load balancer's check
        // must still get an answer, or it cannot take the node out.
        path.Hold();
        var held = await node.CallAsync(HttpMethod.Get, "/readyz", null);
        path.Release();

        Assert.Equal(HttpStatusCode.ServiceUnavailable, held.Status);
        Assert.Equal("{\"status\":\"store unreachable\"}", held.Text);
    }

    [PostgresFact]
    public async Task WhileTheDatabaseHangsReadinessChecksShareOneQueryInsteadOfTakingAConnectionEach()
    {
        await using var node = await Node.StartAsync(postgres, "tally_hang_checks");
        var path = node.Path;
        (await node.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);
        var acceptedBefore = path.Accepted;

        // A load balancer checking often while the database hangs: each check that left its own query behind held a
        // pooled connection until the query's timeout, and the pool opened a new connection for the next check.
        path.Hold();
        var checks = await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => node.CallAsync(HttpMethod.Get, "/readyz", null)));
        var opened = path.Accepted - acceptedBefore;
        path.Release();

        Assert.All(checks, check => Assert.Equal(HttpStatusCode.ServiceUnavailable, check.Status));
        // One query for all six: it runs on the pool's idle connection or on one new connection.
        Assert.True(opened <= 1, $"{opened} connections opened for six readiness checks");
        // Once the database answers again, so does the next check.
        (await node.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);
    }

    /// <summary>A node on its own new database, reached through a forwarder the test can cut or hold.</summary>
    private sealed class Node : TallyApi, IAsyncDisposable
    {
        private WebApplication app = null!;

        public TcpForwarder Path { get; private init; } = null!;

        public static async Task<Node> StartAsync(PostgresFixture postgres, string databasePrefix)
        {
            var direct = new NpgsqlConnectionStringBuilder(postgres.CreateDatabase(databasePrefix + "_" + Guid.NewGuid().ToString("N")[..8]));
            var path = TcpForwarder.Start(new IPEndPoint(IPAddress.Loopback, direct.Port));
            var app = TallyServer.Build(new TallyOptions
            {
                Urls = "http://127.0.0.1:0",
                Store = StoreKind.Postgres,
                Connection = new NpgsqlConnectionStringBuilder(direct.ConnectionString) { Host = "127.0.0.1", Port = path.Port }.ToString(),
                OperatorKey = OperatorKey,
                LogLevel = LogLevel.Warning,
            });
            await app.StartAsync();
            var node = new Node { app = app, Path = path, BaseAddress = new Uri(app.Urls.Single()) };
            node.Client = node.CreateClient();
            return node;
        }

        public async ValueTask DisposeAsync()
        {
            await app.DisposeAsync();
            await Path.DisposeAsync();
        }
    }
}
