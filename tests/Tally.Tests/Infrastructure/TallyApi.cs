using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// A running Tally reached over real HTTP, whether it runs in the test process (<see cref="TallyServerFixture"/>)
/// or as a child `tally serve` process (<see cref="TallyProcess"/>): the calls every test makes.
/// </summary>
public abstract class TallyApi
{
    public const string OperatorKey = "tally_op_test_0123456789abcdefghijklmnopqrstuvwxyz";

    public Uri BaseAddress { get; protected set; } = null!;

    /// <summary>A client without credentials; requests add their own Authorization header.</summary>
    public HttpClient Client { get; protected set; } = null!;

    public HttpClient CreateClient(HttpMessageHandler? handler = null) =>
        new(handler ?? new SocketsHttpHandler(), disposeHandler: true) { BaseAddress = BaseAddress };

    /// <summary>SPEC §2 rule 10: every scenario ends with the ledger check reporting clean.</summary>
    public async Task AssertLedgerVerifiedAsync()
    {
        using var response = await SendAsync(HttpMethod.Get, "/v1/admin/verify", Admin);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.StatusCode == HttpStatusCode.OK, $"verify answered {(int)response.StatusCode}: {text}");
        var report = JsonNode.Parse(text)!;
        Assert.True(report["clean"]!.GetValue<bool>(), "verify found differences: " + text);
    }

    /// <summary>The operator's Authorization header value.</summary>
    public static string Admin => "Bearer " + OperatorKey;

    public async Task<HttpResponseMessage> SendAsync(
        HttpMethod method, string path, string? authorization, object? json = null, IDictionary<string, string>? headers = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);
        if (json is not null)
        {
            var text = json as string ?? JsonSerializer.Serialize(json);
            request.Content = new StringContent(text, Encoding.UTF8, "application/json");
        }
        foreach (var (name, value) in headers ?? new Dictionary<string, string>()) request.Headers.TryAddWithoutValidation(name, value);
        return await Client.SendAsync(request);
    }

    /// <summary>Sends a request and returns its status and parsed JSON body.</summary>
    public async Task<Reply> CallAsync(
        HttpMethod method, string path, string? authorization, object? json = null, IDictionary<string, string>? headers = null)
    {
        using var response = await SendAsync(method, path, authorization, json, headers);
        return await Reply.ReadAsync(response);
    }

    public Task<Reply> AdminAsync(HttpMethod method, string path, object? json = null, IDictionary<string, string>? headers = null) =>
        CallAsync(method, path, Admin, json, headers);

    /// <summary>
    /// A new organization with a key of every scope and, unless <paramref name="subscribe"/> is false, a monthly
    /// subscription of <paramref name="creditsPerPeriod"/> credits (null = unlimited).
    /// </summary>
    public async Task<TestOrganization> CreateOrganizationAsync(long? creditsPerPeriod = 100, bool subscribe = true, string? name = null)
    {
        var created = (await AdminAsync(HttpMethod.Post, "/v1/admin/organizations", new { name = name ?? "Acme " + Guid.NewGuid().ToString("N")[..8] }))
            .Expect(HttpStatusCode.Created);
        var organizationId = created.String("id");
        var key = await CreateKeyAsync(organizationId);
        if (subscribe)
        {
            (await AdminAsync(HttpMethod.Put, $"/v1/admin/organizations/{organizationId}/subscription",
                new { plan = "pro", creditsPerPeriod, period = "month" })).Expect(HttpStatusCode.OK);
        }
        return new TestOrganization(organizationId, key);
    }

    public async Task<TestKey> CreateKeyAsync(string organizationId, params string[] scopes)
    {
        object body = scopes.Length == 0 ? new { name = "test" } : new { name = "test", scopes };
        var created = (await AdminAsync(HttpMethod.Post, $"/v1/admin/organizations/{organizationId}/keys", body)).Expect(HttpStatusCode.Created);
        return new TestKey(created.String("id"), created.String("publicKey"), created.String("secretKey"));
    }

    public async Task<Reply> ConsumeAsync(TestKey key, long credits = 1, string? idempotencyKey = null) =>
        await CallAsync(HttpMethod.Post, "/v1/consumptions", key.Bearer,
            new { credits, idempotencyKey = idempotencyKey ?? Guid.NewGuid().ToString() });

    public async Task<JsonNode> BalanceAsync(TestKey key) =>
        (await CallAsync(HttpMethod.Get, "/v1/balance", key.Bearer)).Expect(HttpStatusCode.OK).Json!;

    /// <summary>What must not change when a request is refused or only reads: the balance and the ledger's length.</summary>
    public async Task<LedgerSnapshot> SnapshotAsync(string organizationId)
    {
        var balance = (await AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organizationId}/balance")).Expect(HttpStatusCode.OK);
        var ledger = (await AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organizationId}/ledger?limit=1000")).Expect(HttpStatusCode.OK);
        return new LedgerSnapshot(balance.Long("total"), balance.Long("used"), balance.Long("remaining"), balance.Long("held"),
            ledger.Json!["items"]!.AsArray().Count);
    }

    /// <summary>Every ledger entry of the organization, newest first, read page by page through the admin API.</summary>
    public async Task<IReadOnlyList<JsonNode>> LedgerEntriesAsync(string organizationId)
    {
        var entries = new List<JsonNode>();
        string? cursor = null;
        do
        {
            var path = $"/v1/admin/organizations/{organizationId}/ledger?limit=1000" + (cursor is null ? "" : "&cursor=" + Uri.EscapeDataString(cursor));
            var page = (await AdminAsync(HttpMethod.Get, path)).Expect(HttpStatusCode.OK).Json!;
            entries.AddRange(page["items"]!.AsArray().Select(item => item!));
            cursor = page["nextCursor"]?.GetValue<string>();
        }
        while (cursor is not null);
        return entries;
    }

    /// <summary>The raw body of the credits-usage compatibility endpoint, as a client of seeds/000 reads it.</summary>
    public async Task<string> CreditsUsageTextAsync(string authorization)
    {
        using var response = await SendAsync(HttpMethod.Get, "/chat/Chatbot/GetMessageCreditsUsage", authorization);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadAsStringAsync();
    }
}

public sealed record TestKey(string Id, string PublicKey, string SecretKey)
{
    /// <summary>The form of seeds/002: `Bearer pk_…:sk_…`.</summary>
    public string Bearer => $"Bearer {PublicKey}:{SecretKey}";

    public string BearerSecret => "Bearer " + SecretKey;
}

public sealed record TestOrganization(string Id, TestKey Key);

public sealed record LedgerSnapshot(long Total, long Used, long Remaining, long Held, int LedgerEntries);

/// <summary>A response read whole: status, content type, headers, raw text and (when it is JSON) the parsed body.</summary>
public sealed record Reply(HttpStatusCode Status, string? ContentType, string Text, JsonNode? Json, HttpResponseHeaders Headers)
{
    public static async Task<Reply> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        JsonNode? json = null;
        try
        {
            if (text.Length > 0) json = JsonNode.Parse(text);
        }
        catch (JsonException)
        {
        }
        return new Reply(response.StatusCode, response.Content.Headers.ContentType?.MediaType, text, json, response.Headers);
    }

    public Reply Expect(HttpStatusCode status)
    {
        Assert.True(Status == status, $"expected {(int)status}, got {(int)Status}: {Text}");
        return this;
    }

    /// <summary>Asserts an RFC 9457 problem with the stable code of SPEC §3.5.</summary>
    public Reply ExpectProblem(HttpStatusCode status, string code)
    {
        Expect(status);
        Assert.True(ContentType == "application/problem+json", $"expected application/problem+json, got {ContentType}: {Text}");
        Assert.Equal(code, Json?["code"]?.GetValue<string>());
        Assert.Equal((int)status, Json?["status"]?.GetValue<int>());
        Assert.False(string.IsNullOrWhiteSpace(Json?["title"]?.GetValue<string>()), "a problem has a title: " + Text);
        Assert.False(string.IsNullOrWhiteSpace(Json?["detail"]?.GetValue<string>()), "a problem says what to fix: " + Text);
        return this;
    }

    public string String(string name) => Json?[name]?.GetValue<string>() ?? throw new Xunit.Sdk.XunitException($"no string {name} in {Text}");

    public long Long(string name) => Json?[name]?.GetValue<long>() ?? throw new Xunit.Sdk.XunitException($"no number {name} in {Text}");

    public bool IsReplay => Headers.TryGetValues("Idempotent-Replayed", out var values) && values.SingleOrDefault() == "true";
}
