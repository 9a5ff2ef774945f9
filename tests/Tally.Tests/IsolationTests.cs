using System.Net;
using System.Security.Cryptography;
using System.Text;
using Tally.Ledger.Stores.Sqlite;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// SPEC §3.1 on the real `tally` process: an organization's key never reads or changes another organization
/// (404, so ids do not leak), never opens the admin API (401), stops working the moment it is revoked, and no
/// secret (nor the operator key) is ever written to the database files or the logs.
/// </summary>
public sealed class IsolationTests(TallyProcess tally, ITestOutputHelper output) : IClassFixture<TallyProcess>
{
    private sealed record Spent(TestOrganization Organization, string ConsumptionId, string HoldId);

    /// <summary>The three forms of SPEC §3.1 in which an organization key may be sent.</summary>
    private static string[] Forms(TestKey key) => [key.Bearer, key.BearerSecret, key.SecretKey];

    [Fact]
    public async Task EveryOrganizationEndpointGivenAnotherOrganizationsIdsAnswers404InEveryKeyFormAndChangesNeither()
    {
        var x = await SpentOrganizationAsync();
        var y = await SpentOrganizationAsync();
        var before = (await tally.SnapshotAsync(x.Organization.Id), await tally.SnapshotAsync(y.Organization.Id));
        var answered = 0;

        foreach (var (caller, owner) in new[] { (x, y), (y, x) })
        {
            foreach (var authorization in Forms(caller.Organization.Key))
            {
                foreach (var (path, body) in EndpointsWithIds(owner))
                {
                    var reply = await tally.CallAsync(HttpMethod.Post, path, authorization, body);
                    Assert.True(reply.Status == HttpStatusCode.NotFound, $"{path} with another organization's key: {(int)reply.Status} {reply.Text}");
                    reply.ExpectProblem(HttpStatusCode.NotFound, "not_found");
                    Assert.DoesNotContain(owner.Organization.Id, reply.Text);
                    answered++;
                }
            }
        }

        Assert.Equal(before, (await tally.SnapshotAsync(x.Organization.Id), await tally.SnapshotAsync(y.Organization.Id)));
        output.WriteLine($"{answered} requests with another organization's ids: all 404 not_found, neither organization changed");
        await tally.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ReadsNamingAnotherOrganizationAnswerOnlyForTheCallersOwnOrganization()
    {
        var x = await SpentOrganizationAsync();
        var y = await SpentOrganizationAsync();
        var other = $"organizationId={y.Organization.Id}&organization={y.Organization.Id}&id={y.Organization.Id}";

        foreach (var path in new[] { "/v1/balance", "/v1/usage", "/v1/ledger", "/api/v1/agents/check-balance" })
        {
            var reply = (await tally.CallAsync(HttpMethod.Get, $"{path}?{other}", x.Organization.Key.Bearer)).Expect(HttpStatusCode.OK);
            foreach (var secret in new[] { y.Organization.Id, y.ConsumptionId, y.HoldId }) Assert.DoesNotContain(secret, reply.Text);
            if (path != "/v1/ledger") Assert.Contains(x.Organization.Id, reply.Text);
        }
        var usage = (await tally.CallAsync(HttpMethod.Get, $"/chat/Chatbot/GetMessageCreditsUsage?{other}", x.Organization.Key.SecretKey)).Expect(HttpStatusCode.OK);
        Assert.Equal("{\"Data\":{\"Total\":70,\"Used\":70,\"Remain\":0},\"Version\":\"1.0.0\",\"Success\":true,\"Code\":200,\"Message\":\"\"}", usage.Text);
        await tally.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task AnotherOrganizationsIdempotencyKeyIsNotAReplayButANewConsumptionOfTheCaller()
    {
        var x = await tally.CreateOrganizationAsync(creditsPerPeriod: 100);
        var y = await tally.CreateOrganizationAsync(creditsPerPeriod: 100);
        var theirs = (await tally.ConsumeAsync(y.Key, credits: 3, idempotencyKey: "message-1")).Expect(HttpStatusCode.Created);

        var mine = (await tally.ConsumeAsync(x.Key, credits: 3, idempotencyKey: "message-1")).Expect(HttpStatusCode.Created);

        Assert.False(mine.IsReplay);
        Assert.NotEqual(theirs.String("id"), mine.String("id"));
        Assert.Equal(3, (await tally.SnapshotAsync(x.Id)).Used);
        Assert.Equal(3, (await tally.SnapshotAsync(y.Id)).Used);
        await tally.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheAdminApiRefusesEveryOrganizationKeyInEveryFormOnEveryAdminEndpointWith401EvenForItsOwnOrganization()
    {
        var x = await SpentOrganizationAsync();
        var organizationId = x.Organization.Id;
        var readOnly = await tally.CreateKeyAsync(organizationId, "balance:read");
        var writeOnly = await tally.CreateKeyAsync(organizationId, "usage:write");
        var keyCount = (await tally.AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organizationId}/keys")).Expect(HttpStatusCode.OK).Json!.AsArray().Count;
        var before = await tally.SnapshotAsync(organizationId);
        var authorizations = Forms(x.Organization.Key).Concat(Forms(readOnly)).Concat(Forms(writeOnly)).ToList();
        var answered = 0;

        foreach (var (method, path, body) in AdminEndpoints(organizationId, x.Organization.Key.Id))
        {
            foreach (var authorization in authorizations)
            {
                var reply = await tally.CallAsync(method, path, authorization, body);
                Assert.True(reply.Status == HttpStatusCode.Unauthorized, $"{method} {path} with an organization key: {(int)reply.Status} {reply.Text}");
                reply.ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
                answered++;
            }
        }

        Assert.Equal(before, await tally.SnapshotAsync(organizationId));
        Assert.Equal(keyCount, (await tally.AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organizationId}/keys")).Expect(HttpStatusCode.OK).Json!.AsArray().Count);
        (await tally.ConsumeAsync(x.Organization.Key)).ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        output.WriteLine($"{answered} admin requests with organization keys: all 401 unauthorized, nothing changed");
        await tally.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task ARevokedKeyIsRefusedAtOnceOnEveryOrganizationEndpointInEveryForm()
    {
        var organization = await tally.CreateOrganizationAsync(creditsPerPeriod: 100);
        var doomed = await tally.CreateKeyAsync(organization.Id);
        var consumption = (await tally.ConsumeAsync(doomed, credits: 5)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await tally.CallAsync(HttpMethod.Post, "/v1/holds", doomed.Bearer, new { credits = 5, idempotencyKey = "h", ttlSeconds = 3_600 }))
            .Expect(HttpStatusCode.Created).String("id");
        // Every path has seen the key, so a copy cached anywhere would be what answers after the revocation.
        foreach (var authorization in Forms(doomed))
        {
            foreach (var path in new[] { "/v1/balance", "/v1/usage", "/v1/ledger", "/api/v1/agents/check-balance", "/chat/Chatbot/GetMessageCreditsUsage" })
            {
                (await tally.CallAsync(HttpMethod.Get, path, authorization)).Expect(HttpStatusCode.OK);
            }
        }

        (await tally.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{organization.Id}/keys/{doomed.Id}")).Expect(HttpStatusCode.OK);
        var before = await tally.SnapshotAsync(organization.Id);

        var refused = 0;
        foreach (var authorization in Forms(doomed))
        {
            foreach (var (method, path, body) in OrganizationEndpoints(consumption, hold))
            {
                var reply = await tally.CallAsync(method, path, authorization, body);
                Assert.True(reply.Status == HttpStatusCode.Unauthorized, $"{method} {path} with a revoked key: {(int)reply.Status} {reply.Text}");
                if (path.StartsWith("/v1/", StringComparison.Ordinal)) reply.ExpectProblem(HttpStatusCode.Unauthorized, "unauthorized");
                refused++;
            }
        }

        Assert.Equal(before, await tally.SnapshotAsync(organization.Id));
        (await tally.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created);
        output.WriteLine($"{refused} requests with the revoked key, the first one right after the revocation: all 401");
        await tally.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task NoSecretKeyAndNotTheOperatorKeyIsEverWrittenToTheDatabaseFilesOrTheLogs()
    {
        // A process of its own: its log holds only this test's requests, and it is stopped to read the files at rest.
        // It logs everything it can, framework included, as an operator chasing a problem would have it.
        await using var process = await TallyProcess.StartAsync(VerboseLogging);
        var first = await process.CreateOrganizationAsync(creditsPerPeriod: 1_000);
        var second = await process.CreateOrganizationAsync(creditsPerPeriod: 1_000);
        var keys = new List<TestKey> { first.Key, second.Key };
        foreach (var organization in new[] { first, second })
        {
            keys.Add(await process.CreateKeyAsync(organization.Id, "balance:read"));
            keys.Add(await process.CreateKeyAsync(organization.Id, "usage:write"));
        }
        await UseEveryKeyEverywhereAsync(process, keys, second.Key);
        (await process.AdminAsync(HttpMethod.Delete, $"/v1/admin/organizations/{first.Id}/keys/{keys[2].Id}")).Expect(HttpStatusCode.OK);
        await UseEveryKeyEverywhereAsync(process, [keys[2]], second.Key);
        await MisuseTheOperatorKeyAsync(process);
        await SendSecretsInBrokenHeadersAsync(process, keys[0]);
        var secrets = keys.Select(key => key.SecretKey).Append(TallyApi.OperatorKey).ToList();

        var running = ReadDataFiles(process);
        Assert.Equal(0, await process.TerminateAsync());
        var stopped = ReadDataFiles(process);

        Assert.Contains("Now listening on", process.Output);
        Assert.True(running.Concat(stopped).Any(file => Contains(file.Bytes, Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(first.Key.SecretKey))))),
            "the key's SHA-256 hash is in the store, so the files searched are the store's");
        foreach (var secret in secrets)
        {
            // The random part alone too, so that a secret stored without its prefix is found as well.
            foreach (var needle in new[] { secret, secret[(secret.LastIndexOf('_') + 1)..] })
            {
                foreach (var (name, bytes) in running.Concat(stopped))
                {
                    Assert.False(Contains(bytes, needle), $"{name} contains a secret ({needle[..8]}…)");
                }
                Assert.False(process.Output.Contains(needle, StringComparison.Ordinal), $"the log contains a secret ({needle[..8]}…)");
            }
        }
        output.WriteLine($"{secrets.Count} secrets searched in {string.Join(", ", running.Concat(stopped).Select(file => $"{file.Name} ({file.Bytes.Length} bytes)"))} "
            + $"and {process.Output.Length} characters of log: none found");
    }

    /// <summary>Every log category at Trace, including those of ASP.NET Core below the Warning that tally sets for it.</summary>
    private static readonly Dictionary<string, string> VerboseLogging = new[]
    {
        "Default", "Microsoft.AspNetCore.Server.Kestrel", "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Routing",
        "Microsoft.AspNetCore.Http", "Microsoft.AspNetCore.Diagnostics", "Microsoft.AspNetCore.RateLimiting", "Microsoft.AspNetCore.Server.Kestrel.BadRequests",
    }.ToDictionary(category => "Logging__LogLevel__" + category, _ => "Trace");

    private async Task<Spent> SpentOrganizationAsync()
    {
        var organization = await tally.CreateOrganizationAsync(creditsPerPeriod: 100);
        var consumption = (await tally.ConsumeAsync(organization.Key, credits: 70)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await tally.CallAsync(HttpMethod.Post, "/v1/holds", organization.Key.Bearer, new { credits = 30, idempotencyKey = "hold", ttlSeconds = 3_600 }))
            .Expect(HttpStatusCode.Created).String("id");
        return new Spent(organization, consumption, hold);
    }

    /// <summary>Every organization endpoint that takes an id, each with a body that would succeed for the owner.</summary>
    private static IEnumerable<(string Path, object Body)> EndpointsWithIds(Spent owner)
    {
        var key = Guid.NewGuid().ToString();
        yield return ($"/v1/consumptions/{owner.ConsumptionId}/refunds", new { idempotencyKey = key + "-refund-all" });
        yield return ($"/v1/consumptions/{owner.ConsumptionId}/refunds", new { credits = 1, idempotencyKey = key + "-refund-one" });
        yield return ($"/v1/holds/{owner.HoldId}/capture", new { credits = 30, idempotencyKey = key + "-capture-all" });
        yield return ($"/v1/holds/{owner.HoldId}/capture", new { credits = 1, idempotencyKey = key + "-capture-one" });
        yield return ($"/v1/holds/{owner.HoldId}/release", new { idempotencyKey = key + "-release" });
    }

    /// <summary>Every organization endpoint, with bodies valid for a key that works.</summary>
    private static IEnumerable<(HttpMethod Method, string Path, object? Body)> OrganizationEndpoints(string consumptionId, string holdId)
    {
        var key = Guid.NewGuid().ToString();
        yield return (HttpMethod.Get, "/v1/balance", null);
        yield return (HttpMethod.Get, "/v1/usage", null);
        yield return (HttpMethod.Get, "/v1/ledger", null);
        yield return (HttpMethod.Post, "/v1/consumptions", new { credits = 1, idempotencyKey = key + "-consume" });
        yield return (HttpMethod.Post, $"/v1/consumptions/{consumptionId}/refunds", new { idempotencyKey = key + "-refund" });
        yield return (HttpMethod.Post, "/v1/holds", new { credits = 1, idempotencyKey = key + "-hold" });
        yield return (HttpMethod.Post, $"/v1/holds/{holdId}/capture", new { credits = 1, idempotencyKey = key + "-capture" });
        yield return (HttpMethod.Post, $"/v1/holds/{holdId}/release", new { idempotencyKey = key + "-release" });
        yield return (HttpMethod.Get, "/api/v1/agents/check-balance", null);
        yield return (HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", null);
        yield return (HttpMethod.Post, "/chat/Chatbot/GetMessageCreditsUsage", new { });
    }

    /// <summary>Every admin endpoint of SPEC §3.4, with bodies the operator's key would have succeeded with.</summary>
    private static IEnumerable<(HttpMethod Method, string Path, object? Body)> AdminEndpoints(string organizationId, string keyId)
    {
        var organization = $"/v1/admin/organizations/{organizationId}";
        yield return (HttpMethod.Post, "/v1/admin/organizations", new { name = "Intruder" });
        yield return (HttpMethod.Get, "/v1/admin/organizations", null);
        yield return (HttpMethod.Get, organization, null);
        yield return (HttpMethod.Patch, organization, new { name = "Renamed", status = "disabled" });
        yield return (HttpMethod.Delete, organization, null);
        yield return (HttpMethod.Post, organization + "/keys", new { name = "more" });
        yield return (HttpMethod.Get, organization + "/keys", null);
        yield return (HttpMethod.Delete, organization + "/keys/" + keyId, null);
        yield return (HttpMethod.Put, organization + "/subscription", new { plan = "free", creditsPerPeriod = 1_000_000, period = "day" });
        yield return (HttpMethod.Delete, organization + "/subscription", null);
        yield return (HttpMethod.Post, organization + "/grants", new { credits = 1_000_000, idempotencyKey = "free-money" });
        yield return (HttpMethod.Post, organization + "/assistants", new { name = "bot" });
        yield return (HttpMethod.Get, organization + "/assistants", null);
        yield return (HttpMethod.Delete, organization + "/assistants/" + Guid.NewGuid(), null);
        yield return (HttpMethod.Get, organization + "/balance", null);
        yield return (HttpMethod.Get, organization + "/usage", null);
        yield return (HttpMethod.Get, organization + "/ledger", null);
        yield return (HttpMethod.Get, "/v1/admin/audit", null);
        yield return (HttpMethod.Get, "/v1/admin/verify", null);
    }

    /// <summary>
    /// Each key on every endpoint in every form, and in forms that must fail while containing the secret (a
    /// foreign public part, characters appended), so a log of refused credentials would show it too.
    /// </summary>
    private static async Task UseEveryKeyEverywhereAsync(TallyApi server, IEnumerable<TestKey> keys, TestKey foreign)
    {
        foreach (var key in keys)
        {
            var consumption = (await server.ConsumeAsync(key)).Json?["id"]?.GetValue<string>() ?? Guid.NewGuid().ToString();
            var hold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", key.Bearer, new { credits = 1, idempotencyKey = Guid.NewGuid().ToString() }))
                .Json?["id"]?.GetValue<string>() ?? Guid.NewGuid().ToString();
            var forms = Forms(key).Concat([$"Bearer {foreign.PublicKey}:{key.SecretKey}", key.SecretKey + "!", "Bearer " + key.SecretKey + "x", "Basic " + key.SecretKey]);
            foreach (var authorization in forms)
            {
                foreach (var (method, path, body) in OrganizationEndpoints(consumption, hold))
                {
                    var reply = await server.CallAsync(method, path, authorization, body);
                    Assert.True((int)reply.Status < 500, $"{method} {path}: {(int)reply.Status} {reply.Text}");
                }
            }
        }
    }

    /// <summary>The operator key where it belongs and where it does not, so a log of refused credentials would show it.</summary>
    private static async Task MisuseTheOperatorKeyAsync(TallyApi server)
    {
        foreach (var authorization in new[] { TallyApi.Admin, TallyApi.OperatorKey, "Basic " + TallyApi.OperatorKey, TallyApi.Admin + "x" })
        {
            foreach (var path in new[] { "/v1/admin/verify", "/v1/admin/organizations", "/v1/balance", "/api/v1/agents/check-balance", "/chat/Chatbot/GetMessageCreditsUsage" })
            {
                var reply = await server.CallAsync(HttpMethod.Get, path, authorization);
                Assert.True((int)reply.Status < 500, $"GET {path}: {(int)reply.Status} {reply.Text}");
            }
            (await server.CallAsync(HttpMethod.Post, "/v1/consumptions", authorization, new { idempotencyKey = "operator" })).Expect(HttpStatusCode.Unauthorized);
        }
    }

    /// <summary>
    /// The secret in headers Kestrel or Tally refuses (a control byte, bytes that are not UTF-8, a doubled header),
    /// so that a log of refused requests would show it.
    /// </summary>
    private static async Task SendSecretsInBrokenHeadersAsync(TallyProcess server, TestKey key)
    {
        byte[][] broken =
        [
            [.. Encoding.ASCII.GetBytes("Authorization: Bearer " + key.SecretKey), 0x01],
            [.. Encoding.ASCII.GetBytes("Authorization: Bearer " + key.SecretKey), 0xFF, 0xFE],
            [.. Encoding.ASCII.GetBytes("Idempotency-Key: " + key.SecretKey), 0xC3, 0x28],
        ];
        foreach (var line in broken)
        {
            var reply = await RawHttp.SendAsync(server.BaseAddress, [Encoding.ASCII.GetBytes("POST /v1/consumptions HTTP/1.1"), line], "{}"u8.ToArray());
            Assert.True((int)reply.Status is >= 400 and < 500, $"a broken header is refused: {(int)reply.Status} {reply.Text}");
        }
        var doubled = await RawHttp.SendAsync(server.BaseAddress, ["GET /v1/balance HTTP/1.1", "Authorization: " + key.Bearer, "Authorization: " + key.Bearer]);
        Assert.Equal(HttpStatusCode.Unauthorized, doubled.Status);
    }

    /// <summary>
    /// The store's files as they are now: tally.db and, while it runs, its -wal and -shm files, and the journal's.
    /// The lock file, which the running server holds locked, is empty: checked by its length, since it cannot be read.
    /// </summary>
    private static List<(string Name, byte[] Bytes)> ReadDataFiles(TallyProcess process)
    {
        var paths = Directory.GetFiles(process.DataDirectory);
        var locks = paths.Where(path => Path.GetFileName(path) == SqliteLedgerStore.LockFileName).ToList();
        Assert.All(locks, path => Assert.Equal(0, new FileInfo(path).Length));
        var files = paths.Except(locks).Select(path => (Path.GetFileName(path), File.ReadAllBytes(path))).ToList();
        Assert.Contains(files, file => file.Item1 == "tally.db");
        return files;
    }

    private static bool Contains(byte[] haystack, string needle) => haystack.AsSpan().IndexOf(Encoding.UTF8.GetBytes(needle)) >= 0;
}
