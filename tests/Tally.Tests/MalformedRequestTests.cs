using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>
/// SPEC §3.5: no request, however malformed, gets a 5xx; each is a 4xx in the envelope of the API its path
/// belongs to (problem+json with a stable code on /v1, the seeds' envelopes on the compatibility paths),
/// and nothing is charged. Requests go over a raw socket so that every byte, header and framing is exact.
/// </summary>
public sealed class MalformedRequestTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    /// <summary>What a case may aim at: an organization with a consumption and an open hold, and another organization's.</summary>
    public sealed record Target(TestOrganization Organization, string ConsumptionId, string HoldId, TestOrganization Other, string OtherConsumptionId, string OtherHoldId);

    public sealed record Request(string Method, string Path, string? Authorization, string? Json = null, IReadOnlyList<string>? ExtraHeaders = null)
    {
        public byte[]? Body { get; init; } = Json is null ? null : Encoding.UTF8.GetBytes(Json);
        public bool Chunked { get; init; }
    }

    public sealed record Case(string Name, int Status, string? Code, Func<Target, Request> Build)
    {
        /// <summary>The field a validation problem must name, where a case says so: a 400 for the wrong field passes otherwise.</summary>
        public string? Field { get; init; }
    }

    private const string CreditsUsagePath = "/chat/Chatbot/GetMessageCreditsUsage";
    private const string CheckBalancePath = "/api/v1/agents/check-balance";

    private static readonly IReadOnlyDictionary<string, Case> Cases = BuildCases().ToDictionary(@case => @case.Name);

    public static TheoryData<string> CaseNames => new(Cases.Keys);

    [Theory]
    [MemberData(nameof(CaseNames))]
    public async Task AMalformedRequestIsRefusedWithA4xxInItsApisEnvelopeAndChargesNothing(string caseName)
    {
        var @case = Cases[caseName];
        var target = await CreateTargetAsync();
        var before = (await server.SnapshotAsync(target.Organization.Id), await server.SnapshotAsync(target.Other.Id));
        var request = @case.Build(target);

        var reply = await SendAsync(request);

        var context = $"{caseName}: {request.Method} {request.Path} answered {(int)reply.Status} {reply.ContentType} {reply.Text}";
        Assert.True((int)reply.Status is >= 400 and < 500, "expected a 4xx; " + context);
        Assert.True((int)reply.Status == @case.Status, $"expected {@case.Status}; " + context);
        AssertEnvelope(request.Path, (int)reply.Status, @case.Code, reply, context);
        if (@case.Field is { } field)
        {
            var errors = JsonNode.Parse(reply.Text)?["errors"]?.AsObject();
            Assert.True(errors?.ContainsKey(field) == true, $"expected the problem to name {field}; " + context);
        }
        Assert.True(reply.Headers.ContainsKey("x-request-id"), "every answer of Tally carries its request id; " + context);
        Assert.Equal(before, (await server.SnapshotAsync(target.Organization.Id), await server.SnapshotAsync(target.Other.Id)));
        await server.AssertLedgerVerifiedAsync();
    }

    [Fact]
    public async Task TheApiReferenceListsTheStatusOfEveryErrorTheseCasesGetFromADocumentedOperation()
    {
        var document = JsonNode.Parse(await server.Client.GetStringAsync("/openapi/v1.json"))!;
        var paths = document["paths"]!.AsObject()
            .Select(path => (Pattern: new Regex("^" + Regex.Replace(path.Key, "\\{[^}]+\\}", "[^/]+") + "$"), Operations: path.Value!.AsObject()))
            .ToList();
        var target = await CreateTargetAsync();
        var checkedCases = 0;
        var missing = new List<string>();

        foreach (var @case in Cases.Values)
        {
            var request = @case.Build(target);
            var path = request.Path.Split('?')[0];
            // Unknown routes and methods no route serves have no operation to list a status.
            var operation = paths.FirstOrDefault(candidate => candidate.Pattern.IsMatch(path)).Operations?[request.Method.ToLowerInvariant()];
            if (operation is null) continue;
            checkedCases++;
            if (operation["responses"]?[@case.Status.ToString(CultureInfo.InvariantCulture)] is null)
            {
                missing.Add($"{@case.Name}: {request.Method} {path} answers {@case.Status}");
            }
        }

        Assert.True(checkedCases > 50, $"only {checkedCases} cases reached a documented operation");
        Assert.Empty(missing);
    }

    [Fact]
    public async Task AnAuthorizationHeaderBeyondKestrelsHeaderLimitIsRefusedWith431BeforeTallySeesIt()
    {
        // Kestrel refuses headers over 32 KiB in total before any middleware runs, so this 4xx has no envelope.
        var target = await CreateTargetAsync();
        var before = await server.SnapshotAsync(target.Organization.Id);

        var reply = await SendAsync(new Request("POST", "/v1/consumptions", "Bearer sk_" + new string('a', 40_000), "{\"idempotencyKey\":\"k\"}"));

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, reply.Status);
        Assert.Equal(before, await server.SnapshotAsync(target.Organization.Id));
        await server.AssertLedgerVerifiedAsync();
    }

    private async Task<Target> CreateTargetAsync()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var other = await server.CreateOrganizationAsync(creditsPerPeriod: 100);
        var consumption = (await server.ConsumeAsync(organization.Key, credits: 5)).Expect(HttpStatusCode.Created).String("id");
        var hold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", organization.Key.Bearer, new { credits = 10, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created).String("id");
        var otherConsumption = (await server.ConsumeAsync(other.Key, credits: 5)).Expect(HttpStatusCode.Created).String("id");
        var otherHold = (await server.CallAsync(HttpMethod.Post, "/v1/holds", other.Key.Bearer, new { credits = 10, idempotencyKey = "hold" })).Expect(HttpStatusCode.Created).String("id");
        return new Target(organization, consumption, hold, other, otherConsumption, otherHold);
    }

    private Task<RawHttp.RawReply> SendAsync(Request request)
    {
        var head = new List<string> { $"{request.Method} {request.Path} HTTP/1.1" };
        if (request.Authorization is not null) head.Add("Authorization: " + request.Authorization);
        if (request.Body is not null) head.Add("Content-Type: application/json");
        head.AddRange(request.ExtraHeaders ?? []);
        return RawHttp.SendAsync(server.BaseAddress, head, request.Body, request.Chunked);
    }

    private static void AssertEnvelope(string path, int status, string? code, RawHttp.RawReply reply, string context)
    {
        var api = path.StartsWith("/chat/", StringComparison.Ordinal) ? Api.CreditsUsage
            : path.StartsWith("/api/v1/agents/", StringComparison.Ordinal) ? Api.CheckBalance
            : Api.Problem;
        var mismatch = Envelopes.Mismatch(api, status, reply, code);
        Assert.True(mismatch is null, mismatch + "; " + context);
    }

    private static IEnumerable<Case> BuildCases()
    {
        const int invalid = 400;
        const string validation = "validation_failed";
        static Request Consume(Target target, string json) => new("POST", "/v1/consumptions", target.Organization.Key.Bearer, json);
        static Request Hold(Target target, string json) => new("POST", "/v1/holds", target.Organization.Key.Bearer, json);
        static Request Capture(Target target, string json) => new("POST", $"/v1/holds/{target.HoldId}/capture", target.Organization.Key.Bearer, json);
        static Request Refund(Target target, string json) => new("POST", $"/v1/consumptions/{target.ConsumptionId}/refunds", target.Organization.Key.Bearer, json);
        var deep = string.Concat(Enumerable.Repeat("{\"a\":", 64)) + "1" + new string('}', 64);
        var seventeenPairs = "{" + string.Join(",", Enumerable.Range(0, 17).Select(index => $"\"k{index}\":\"v\"")) + "}";
        var oversized = "{\"idempotencyKey\":\"big\",\"identifier\":\"" + new string('x', 70_000) + "\"}";

        // Bodies that are not a usable JSON object.
        yield return new("broken JSON", invalid, validation, target => Consume(target, "{\"credits\": 1,"));
        yield return new("form body instead of JSON", invalid, validation, target => Consume(target, "credits=1&idempotencyKey=k"));
        yield return new("JSON array root", invalid, validation, target => Consume(target, "[{\"credits\":1,\"idempotencyKey\":\"k\"}]"));
        yield return new("JSON string root", invalid, validation, target => Consume(target, "\"credits\""));
        yield return new("JSON number root", invalid, validation, target => Consume(target, "1"));
        yield return new("JSON null root", invalid, validation, target => Consume(target, "null"));
        yield return new("invalid UTF-8 inside a JSON string", invalid, validation,
            target => Consume(target, "{}") with { Body = [.. "{\"idempotencyKey\":\"k"u8, 0xFF, 0xFE, .. "\",\"identifier\":\"caf"u8, 0xC3, 0x28, .. "\"}"u8] });
        yield return new("deeply nested JSON", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":" + deep + "}"));
        yield return new("body over 64 KiB", 413, "payload_too_large", target => Consume(target, oversized));
        yield return new("body over 64 KiB sent chunked", 413, "payload_too_large", target => Consume(target, oversized) with { Chunked = true });
        yield return new("body over 64 KiB to an admin endpoint", 413, "payload_too_large",
            target => new("POST", "/v1/admin/organizations", TallyServerFixture.Admin, "{\"name\":\"" + new string('x', 70_000) + "\"}"));

        // Wrong types and out-of-range credits.
        yield return new("credits as a string", invalid, validation, target => Consume(target, "{\"credits\":\"1\",\"idempotencyKey\":\"k\"}"));
        yield return new("credits as a boolean", invalid, validation, target => Consume(target, "{\"credits\":true,\"idempotencyKey\":\"k\"}"));
        yield return new("credits as an object", invalid, validation, target => Consume(target, "{\"credits\":{\"value\":1},\"idempotencyKey\":\"k\"}"));
        yield return new("fractional credits", invalid, validation, target => Consume(target, "{\"credits\":1.5,\"idempotencyKey\":\"k\"}"));
        yield return new("credits in exponent notation that are not whole", invalid, validation, target => Consume(target, "{\"credits\":15e-1,\"idempotencyKey\":\"k\"}"));
        yield return new("credits beyond the largest whole number", invalid, validation, target => Consume(target, "{\"credits\":1e30,\"idempotencyKey\":\"k\"}"));
        yield return new("zero credits", invalid, validation, target => Consume(target, "{\"credits\":0,\"idempotencyKey\":\"k\"}"));
        yield return new("negative credits", invalid, validation, target => Consume(target, "{\"credits\":-1,\"idempotencyKey\":\"k\"}"));
        yield return new("credits over one billion", invalid, validation, target => Consume(target, "{\"credits\":1000000001,\"idempotencyKey\":\"k\"}"));
        yield return new("credits beyond a 64-bit integer", invalid, validation, target => Consume(target, "{\"credits\":123456789012345678901234567890,\"idempotencyKey\":\"k\"}"));
        yield return new("hold without credits", invalid, validation, target => Hold(target, "{\"idempotencyKey\":\"k\"}"));
        yield return new("hold with null credits", invalid, validation, target => Hold(target, "{\"credits\":null,\"idempotencyKey\":\"k\"}"));
        yield return new("hold with negative credits", invalid, validation, target => Hold(target, "{\"credits\":-10,\"idempotencyKey\":\"k\"}"));
        yield return new("hold with a zero time to live", invalid, validation, target => Hold(target, "{\"credits\":1,\"ttlSeconds\":0,\"idempotencyKey\":\"k\"}"));
        yield return new("hold living longer than a day", invalid, validation, target => Hold(target, "{\"credits\":1,\"ttlSeconds\":86401,\"idempotencyKey\":\"k\"}"));
        yield return new("capture without credits", invalid, validation, target => Capture(target, "{\"idempotencyKey\":\"k\"}"));
        yield return new("capture with null credits", invalid, validation, target => Capture(target, "{\"credits\":null,\"idempotencyKey\":\"k\"}"));
        yield return new("capture of zero credits", invalid, validation, target => Capture(target, "{\"credits\":0,\"idempotencyKey\":\"k\"}"));
        yield return new("capture of more than held", invalid, validation, target => Capture(target, "{\"credits\":11,\"idempotencyKey\":\"k\"}"));
        yield return new("refund of negative credits", invalid, validation, target => Refund(target, "{\"credits\":-1,\"idempotencyKey\":\"k\"}"));
        yield return new("refund of more than consumed", invalid, validation, target => Refund(target, "{\"credits\":6,\"idempotencyKey\":\"k\"}"));
        yield return new("assistantId as a number", invalid, validation, target => Consume(target, "{\"assistantId\":7,\"idempotencyKey\":\"k\"}"));
        yield return new("identifier over 256 characters", invalid, validation, target => Consume(target, "{\"identifier\":\"" + new string('i', 257) + "\",\"idempotencyKey\":\"k\"}"));

        // Metadata beyond SPEC §3's 16 string pairs of up to 256 characters.
        yield return new("metadata value of 257 characters", invalid, validation,
            target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":\"" + string.Concat(Enumerable.Repeat("é", 257)) + "\"}}"));
        yield return new("metadata with 17 pairs", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":" + seventeenPairs + "}"));
        yield return new("metadata with a number value", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"tokens\":12}}"));
        yield return new("metadata with a null value", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":null}}"));
        yield return new("metadata with a nested object", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":{\"b\":\"c\"}}}"));
        yield return new("metadata as an array", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":[\"a\"]}"));
        yield return new("metadata value over 256 characters", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":\"" + new string('v', 257) + "\"}}"));
        yield return new("metadata with an empty key", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"\":\"v\"}}"));

        // A field named twice has no one meaning; text fields refuse control characters; value names are lowercase.
        yield return new("credits named twice", invalid, validation, target => Consume(target, "{\"credits\":1,\"credits\":1000,\"idempotencyKey\":\"k\"}")) { Field = "body" };
        yield return new("a metadata key named twice", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":\"1\",\"a\":\"2\"}}")) { Field = "body" };
        yield return new("identifier with a NUL character", invalid, validation, target => Consume(target, "{\"identifier\":\"a\\u0000b\",\"idempotencyKey\":\"k\"}")) { Field = "identifier" };
        yield return new("assistantId with a line break", invalid, validation, target => Consume(target, "{\"assistantId\":\"a\\nb\",\"idempotencyKey\":\"k\"}")) { Field = "assistantId" };
        yield return new("hold identifier with a C1 control character", invalid, validation, target => Hold(target, "{\"credits\":1,\"identifier\":\"a\\u009bb\",\"idempotencyKey\":\"k\"}")) { Field = "identifier" };
        yield return new("organization name with an escape character", invalid, validation,
            target => new("POST", "/v1/admin/organizations", TallyServerFixture.Admin, "{\"name\":\"red\\u001b[31m\"}")) { Field = "name" };
        yield return new("renaming an organization to a name with a NUL character", invalid, validation,
            target => new("PATCH", $"/v1/admin/organizations/{target.Organization.Id}", TallyServerFixture.Admin, "{\"name\":\"a\\u0000\"}")) { Field = "name" };
        yield return new("grant reason with an escape character", invalid, validation,
            target => new("POST", $"/v1/admin/organizations/{target.Organization.Id}/grants", TallyServerFixture.Admin, "{\"credits\":5,\"idempotencyKey\":\"k\",\"reason\":\"a\\u001bb\"}")) { Field = "reason" };
        yield return new("grant source in capitals", invalid, validation,
            target => new("POST", $"/v1/admin/organizations/{target.Organization.Id}/grants", TallyServerFixture.Admin, "{\"credits\":5,\"idempotencyKey\":\"k\",\"source\":\"Promo\"}")) { Field = "source" };
        yield return new("subscription period in capitals", invalid, validation,
            target => new("PUT", $"/v1/admin/organizations/{target.Organization.Id}/subscription", TallyServerFixture.Admin, "{\"plan\":\"p\",\"creditsPerPeriod\":5,\"period\":\"Month\"}")) { Field = "period" };
        yield return new("half a surrogate pair escaped in a field name", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"\\ud800\":1}")) { Field = "body" };
        yield return new("half a surrogate pair escaped in a field name of an array body", invalid, validation, target => Consume(target, "[{\"\\ud800\":1}]")) { Field = "body" };
        yield return new("half a surrogate pair escaped in the identifier", invalid, validation, target => Consume(target, "{\"identifier\":\"a\\ud800b\",\"idempotencyKey\":\"k\"}")) { Field = "body" };
        yield return new("half a surrogate pair escaped in a metadata value", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":\"\\udc00\"}}")) { Field = "body" };
        yield return new("a metadata key with an escape character", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"k\\u001b\":\"v\"}}")) { Field = "metadata" };
        yield return new("a metadata value with a record separator", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"k\",\"metadata\":{\"a\":\"1\\u001eb=2\"}}")) { Field = "metadata" };
        yield return new("identifier with a right-to-left override", invalid, validation, target => Consume(target, "{\"identifier\":\"a\\u202eb\",\"idempotencyKey\":\"k\"}")) { Field = "identifier" };
        yield return new("organization name with a line separator", invalid, validation,
            target => new("POST", "/v1/admin/organizations", TallyServerFixture.Admin, "{\"name\":\"a\\u2028b\"}")) { Field = "name" };
        yield return new("an organization search for a NUL character", invalid, validation, target => new("GET", "/v1/admin/organizations?q=%00", TallyServerFixture.Admin)) { Field = "q" };
        yield return new("status in capitals", invalid, validation,
            target => new("PATCH", $"/v1/admin/organizations/{target.Organization.Id}", TallyServerFixture.Admin, "{\"status\":\"Disabled\"}")) { Field = "status" };

        // Idempotency keys (SPEC §2 rule 2: required, 1 to 128 printable ASCII characters, header and body agreeing).
        yield return new("missing idempotency key", invalid, validation, target => Consume(target, "{\"credits\":1}"));
        yield return new("empty body, so no idempotency key", invalid, validation, target => new("POST", "/v1/consumptions", target.Organization.Key.Bearer));
        yield return new("empty idempotency key", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"\"}"));
        yield return new("idempotency key of 129 characters", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"" + new string('k', 129) + "\"}"));
        yield return new("idempotency key with a control character", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"a\\u0001b\"}"));
        yield return new("idempotency key with a tab", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"a\\tb\"}"));
        yield return new("idempotency key with DEL", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"a\\u007fb\"}"));
        yield return new("idempotency key with non-ASCII", invalid, validation, target => Consume(target, "{\"idempotencyKey\":\"caf\u00e9\"}"));
        yield return new("idempotency key as a number", invalid, validation, target => Consume(target, "{\"idempotencyKey\":42}"));
        yield return new("Idempotency-Key header of 129 characters", invalid, validation,
            target => Consume(target, "{}") with { ExtraHeaders = ["Idempotency-Key: " + new string('k', 129)] });
        yield return new("Idempotency-Key header with non-ASCII", invalid, validation,
            target => Consume(target, "{}") with { ExtraHeaders = ["Idempotency-Key: caf\u00e9"] });
        yield return new("Idempotency-Key header and body key differ", invalid, validation,
            target => Consume(target, "{\"idempotencyKey\":\"body-key\"}") with { ExtraHeaders = ["Idempotency-Key: header-key"] });
        yield return new("two Idempotency-Key headers", invalid, validation,
            target => Consume(target, "{}") with { ExtraHeaders = ["Idempotency-Key: one", "Idempotency-Key: two"] });
        yield return new("release without an idempotency key", invalid, validation,
            target => new("POST", $"/v1/holds/{target.HoldId}/release", target.Organization.Key.Bearer, "{}"));

        // Unknown ids, and ids of another organization (404, so ids do not leak).
        yield return new("refund of an unknown consumption", 404, "not_found", target => Refund(target, "{\"idempotencyKey\":\"k\"}") with { Path = $"/v1/consumptions/{Guid.NewGuid()}/refunds" });
        yield return new("capture of an unknown hold", 404, "not_found", target => Capture(target, "{\"credits\":1,\"idempotencyKey\":\"k\"}") with { Path = $"/v1/holds/{Guid.NewGuid()}/capture" });
        yield return new("release of an unknown hold", 404, "not_found", target => new("POST", $"/v1/holds/{Guid.NewGuid()}/release", target.Organization.Key.Bearer, "{\"idempotencyKey\":\"k\"}"));
        yield return new("refund with a 300-character id", 404, "not_found", target => Refund(target, "{\"idempotencyKey\":\"k\"}") with { Path = $"/v1/consumptions/{new string('9', 300)}/refunds" });
        yield return new("refund of another organization's consumption", 404, "not_found",
            target => Refund(target, "{\"idempotencyKey\":\"k\"}") with { Path = $"/v1/consumptions/{target.OtherConsumptionId}/refunds" });
        yield return new("capture of another organization's hold", 404, "not_found",
            target => Capture(target, "{\"credits\":1,\"idempotencyKey\":\"k\"}") with { Path = $"/v1/holds/{target.OtherHoldId}/capture" });
        yield return new("release of another organization's hold", 404, "not_found",
            target => new("POST", $"/v1/holds/{target.OtherHoldId}/release", target.Organization.Key.Bearer, "{\"idempotencyKey\":\"k\"}"));
        yield return new("admin read of an unknown organization", 404, "not_found", target => new("GET", $"/v1/admin/organizations/org-{Guid.NewGuid()}", TallyServerFixture.Admin));
        yield return new("grant to an unknown organization", 404, "not_found",
            target => new("POST", $"/v1/admin/organizations/org-{Guid.NewGuid()}/grants", TallyServerFixture.Admin, "{\"credits\":5,\"idempotencyKey\":\"k\"}"));

        // Unknown routes and wrong methods, in each API's envelope.
        yield return new("unknown route under /v1", 404, "not_found", target => new("GET", "/v1/nothing-here", target.Organization.Key.Bearer));
        yield return new("unknown route outside every API", 404, "not_found", target => new("GET", "/wp-login.php", null));
        yield return new("unknown OpenAPI document", 404, "not_found", target => new("GET", "/openapi/v2.json", null));
        yield return new("OpenAPI document name with an encoded slash", 404, "not_found", target => new("GET", "/openapi/%2fv1.json", null));
        yield return new("GET on a POST-only endpoint", 405, "method_not_allowed", target => new("GET", "/v1/consumptions", target.Organization.Key.Bearer));
        yield return new("DELETE on the balance", 405, "method_not_allowed", target => new("DELETE", "/v1/balance", target.Organization.Key.Bearer));
        yield return new("PUT on an admin collection", 405, "method_not_allowed", target => new("PUT", "/v1/admin/organizations", TallyServerFixture.Admin, "{}"));
        yield return new("PUT on the credits-usage endpoint", 405, null, target => new("PUT", CreditsUsagePath, target.Organization.Key.SecretKey, "{}"));
        yield return new("unknown route under /chat", 404, null, target => new("GET", "/chat/Chatbot/GetNothing", target.Organization.Key.SecretKey));
        yield return new("POST on check-balance", 405, null, target => new("POST", CheckBalancePath, target.Organization.Key.Bearer, "{}"));
        yield return new("unknown route under /api/v1/agents", 404, null, target => new("GET", "/api/v1/agents/check-nothing", target.Organization.Key.Bearer));
        yield return new("body over 64 KiB to the credits-usage endpoint", 413, null, target => new("POST", CreditsUsagePath, target.Organization.Key.SecretKey, oversized));
        yield return new("body over 64 KiB to check-balance", 413, null, target => new("GET", CheckBalancePath, target.Organization.Key.Bearer, oversized));

        // Every malformed Authorization form, on the native API and on both compatibility endpoints.
        foreach (var (form, authorization) in MalformedAuthorizations())
        {
            yield return new($"Authorization {form} on /v1/consumptions", 401, "unauthorized",
                target => new Request("POST", "/v1/consumptions", null, "{\"idempotencyKey\":\"k\"}") with { ExtraHeaders = authorization(target) });
            yield return new($"Authorization {form} on the credits-usage endpoint", 401, null,
                target => new Request("GET", CreditsUsagePath, null, "{}") with { ExtraHeaders = authorization(target) });
            yield return new($"Authorization {form} on check-balance", 401, null,
                target => new Request("GET", CheckBalancePath, null) with { ExtraHeaders = authorization(target) });
        }
    }

    /// <summary>Header lines (zero, one or two) that carry no usable organization key.</summary>
    private static IEnumerable<(string Form, Func<Target, string[]> Lines)> MalformedAuthorizations()
    {
        static string[] One(string value) => ["Authorization: " + value];
        yield return ("missing", _ => []);
        yield return ("empty", _ => One(""));
        yield return ("'Bearer'", _ => One("Bearer"));
        yield return ("'Bearer '", _ => One("Bearer "));
        yield return ("'Basic xxx'", _ => One("Basic dXNlcjpwYXNzd29yZA=="));
        yield return ("public key only", target => One(target.Organization.Key.PublicKey));
        yield return ("'Bearer pk_only'", target => One("Bearer " + target.Organization.Key.PublicKey));
        yield return ("'Bearer pk_x:'", target => One($"Bearer {target.Organization.Key.PublicKey}:"));
        yield return ("'Bearer :sk_x'", target => One($"Bearer :{target.Organization.Key.SecretKey}"));
        yield return ("'Bearer pk:sk:extra'", target => One($"Bearer {target.Organization.Key.PublicKey}:{target.Organization.Key.SecretKey}:extra"));
        yield return ("'Bearer sk' with a space inside", target => One($"Bearer {target.Organization.Key.SecretKey[..10]} {target.Organization.Key.SecretKey[10..]}"));
        yield return ("secret with upper-case prefix", target => One("SK_" + target.Organization.Key.SecretKey[3..]));
        yield return ("secret with a symbol", target => One(target.Organization.Key.SecretKey + "!"));
        yield return ("unknown well-formed secret", _ => One("Bearer sk_" + new string('0', 40)));
        yield return ("another key's public part", target => One($"Bearer {target.Other.Key.PublicKey}:{target.Organization.Key.SecretKey}"));
        yield return ("operator key", _ => One(TallyServerFixture.Admin));
        yield return ("very long (8 KiB)", _ => One("Bearer sk_" + new string('a', 8 * 1024)));
        yield return ("non-ASCII", target => One($"Bearer {target.Organization.Key.PublicKey}:{target.Organization.Key.SecretKey}\u00e9"));
        yield return ("two headers", target => [.. One(target.Organization.Key.Bearer), .. One(target.Organization.Key.Bearer)]);
    }
}
