using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tally.Tests.Infrastructure;

/// <summary>One generated request, as exact bytes, with what the test needs to judge its answer.</summary>
public sealed record HostileRequest(
    string Method, byte[] Target, IReadOnlyList<byte[]> Headers, byte[]? Body, bool Chunked, string Credential, string? OrganizationId,
    string Tricks)
{
    /// <summary>Kestrel's request line limit, less the method and version around the target.</summary>
    private const int TargetBytesMax = 8 * 1024 - 32;

    /// <summary>
    /// Bytes Kestrel's HTTP parser refuses are answered by Kestrel (400, 414 or 431) before any Tally code runs, so
    /// without an envelope: a target with spaces, control or raw non-ASCII bytes, an encoded NUL, or over 8 KiB;
    /// a header value with control bytes or bytes that are not UTF-8.
    /// </summary>
    public bool MayBeRefusedByHttpParsing =>
        Target.Length > TargetBytesMax
        || Target.Any(value => value is <= 0x20 or >= 0x7f)
        || Encoding.ASCII.GetString(Target).Contains("%00", StringComparison.Ordinal)
        || Headers.Any(line => line.Any(value => value is < 0x20 and not 0x09 or 0x7f) || !System.Text.Unicode.Utf8.IsValid(line));

    public bool IsRead => Method is "GET" or "HEAD";

    /// <summary>The path the server routes: percent-decoded except `%2F`, dot segments removed, no query.</summary>
    public string RoutedPath => PathModel.Routed(Target);

    public Task<RawHttp.RawReply> SendAsync(Uri server) =>
        RawHttp.SendAsync(server, [[.. Encoding.ASCII.GetBytes(Method + " "), .. Target, .. " HTTP/1.1"u8], .. Headers], Body, Chunked);

    public override string ToString()
    {
        var target = Printable(Target, 160);
        var body = Body is null ? "no body" : $"{(Chunked ? "chunked " : "")}body of {Body.Length} bytes: {Printable(Body, 160)}";
        return $"{Method} {target} as {Credential} [{Tricks}] {body}";
    }

    private static string Printable(byte[] bytes, int lengthMax)
    {
        var text = new StringBuilder();
        foreach (var value in bytes.Take(lengthMax)) text.Append(value is >= 0x20 and < 0x7f ? ((char)value).ToString() : $"\\x{value:X2}");
        return bytes.Length > lengthMax ? text + $"…({bytes.Length} bytes)" : text.ToString();
    }
}

/// <summary>How Kestrel turns a request target into the path it routes, for choosing the envelope a reply must have.</summary>
public static class PathModel
{
    public static string Routed(byte[] target)
    {
        var end = Array.IndexOf(target, (byte)'?');
        var raw = end < 0 ? target : target[..end];
        var decoded = new List<byte>(raw.Length);
        for (var index = 0; index < raw.Length; index++)
        {
            if (raw[index] == '%' && index + 2 < raw.Length && IsHex(raw[index + 1]) && IsHex(raw[index + 2]))
            {
                var value = Convert.ToByte(Encoding.ASCII.GetString(raw, index + 1, 2), 16);
                // Kestrel leaves an encoded slash encoded, so it never splits a segment.
                if (value != '/')
                {
                    decoded.Add(value);
                    index += 2;
                    continue;
                }
            }
            decoded.Add(raw[index]);
        }
        return RemoveDotSegments(Encoding.UTF8.GetString(decoded.ToArray()));
    }

    private static bool IsHex(byte value) => char.IsAsciiHexDigit((char)value);

    /// <summary>RFC 3986 §5.2.4.</summary>
    private static string RemoveDotSegments(string path)
    {
        var output = new List<string>();
        var segments = path.Split('/');
        for (var index = 1; index < segments.Length; index++)
        {
            var last = index == segments.Length - 1;
            switch (segments[index])
            {
                case ".":
                    if (last) output.Add("");
                    break;
                case "..":
                    if (output.Count > 0) output.RemoveAt(output.Count - 1);
                    if (last) output.Add("");
                    break;
                default:
                    output.Add(segments[index]);
                    break;
            }
        }
        return "/" + string.Join('/', output);
    }
}

/// <summary>The ids and keys a generated request may aim at; the test builds them before the first request.</summary>
public sealed record FuzzTargets(
    TestOrganization A, TestKey AReadOnly, TestKey AWriteOnly, TestKey ARevoked, string AConsumption, string AHold, string AAssistant,
    TestOrganization B, string BConsumption, string BHold,
    TestOrganization Disabled, TestOrganization Deleted,
    TestOrganization Sacrificial, string SacrificialAssistant);

/// <summary>
/// A seeded generator of malformed and hostile requests over every endpoint: the same seed gives the same
/// sequence. Requests aimed with the operator key at changing an organization only touch the sacrificial
/// one, so that the guarded organizations change only through their own keys.
/// </summary>
public sealed class HostileRequests(Random random, FuzzTargets targets)
{
    private sealed record Endpoint(string Method, string Template, BodyKind Body);

    private enum BodyKind { None, Any, Consume, Refund, Hold, Capture, Release, Organization, OrganizationPatch, Key, Subscription, Grant, Assistant }

    private sealed record Credential(string Name, IReadOnlyList<byte[]> Lines, string? OrganizationId, bool IsOperator);

    /// <summary>Bodies over SPEC §3's 64 KiB go up to this, to be refused with 413.</summary>
    private const int OversizedBodyBytesMax = 100 * 1024;

    /// <summary>Random byte bodies stay small: their job is to be unreadable, not large.</summary>
    private const int RandomBodyBytesMax = 2_048;

    private static readonly Endpoint[] Endpoints =
    [
        new("GET", "/healthz", BodyKind.None), new("GET", "/readyz", BodyKind.None), new("GET", "/metrics", BodyKind.None),
        new("GET", "/openapi/v1.json", BodyKind.None), new("GET", "/docs/index.html", BodyKind.None), new("GET", "/", BodyKind.None),
        new("GET", "/chat/Chatbot/GetMessageCreditsUsage", BodyKind.Any), new("POST", "/chat/Chatbot/GetMessageCreditsUsage", BodyKind.Any),
        new("GET", "/api/v1/agents/check-balance", BodyKind.Any),
        new("GET", "/v1/balance", BodyKind.None), new("GET", "/v1/usage", BodyKind.None), new("GET", "/v1/ledger", BodyKind.None),
        new("POST", "/v1/consumptions", BodyKind.Consume), new("POST", "/v1/consumptions", BodyKind.Consume),
        new("POST", "/v1/consumptions/{consumption}/refunds", BodyKind.Refund),
        new("POST", "/v1/holds", BodyKind.Hold), new("POST", "/v1/holds/{hold}/capture", BodyKind.Capture),
        new("POST", "/v1/holds/{hold}/release", BodyKind.Release),
        new("POST", "/v1/admin/organizations", BodyKind.Organization), new("GET", "/v1/admin/organizations", BodyKind.None),
        new("GET", "/v1/admin/organizations/{id}", BodyKind.None), new("PATCH", "/v1/admin/organizations/{id}", BodyKind.OrganizationPatch),
        new("DELETE", "/v1/admin/organizations/{id}", BodyKind.None), new("POST", "/v1/admin/organizations/{id}/keys", BodyKind.Key),
        new("GET", "/v1/admin/organizations/{id}/keys", BodyKind.None), new("DELETE", "/v1/admin/organizations/{id}/keys/{keyId}", BodyKind.None),
        new("PUT", "/v1/admin/organizations/{id}/subscription", BodyKind.Subscription), new("DELETE", "/v1/admin/organizations/{id}/subscription", BodyKind.None),
        new("POST", "/v1/admin/organizations/{id}/grants", BodyKind.Grant), new("POST", "/v1/admin/organizations/{id}/assistants", BodyKind.Assistant),
        new("GET", "/v1/admin/organizations/{id}/assistants", BodyKind.None), new("DELETE", "/v1/admin/organizations/{id}/assistants/{assistantId}", BodyKind.None),
        new("GET", "/v1/admin/organizations/{id}/balance", BodyKind.None), new("GET", "/v1/admin/organizations/{id}/usage", BodyKind.None),
        new("GET", "/v1/admin/organizations/{id}/ledger", BodyKind.None), new("GET", "/v1/admin/audit", BodyKind.None),
        new("GET", "/v1/admin/verify", BodyKind.None), new("POST", "/v1/nothing-here", BodyKind.Any), new("GET", "/wp-login.php", BodyKind.None),
    ];

    private static readonly string[] Methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "PROPFIND", "get", "Post"];

    /// <summary>Strings that try to break out of a SQL literal or statement.</summary>
    private static readonly string[] SqlStrings =
    [
        "' OR '1'='1", "1; DROP TABLE ledger_entries;--", "\" OR 1=1 --", "') UNION SELECT secret_hash FROM api_keys--",
        "%' AND 1=0 UNION SELECT NULL,NULL--", "1' AND SLEEP(5)--", "'; UPDATE grants SET remaining = 1000000 WHERE '1'='1",
        "org-1' OR organization_id LIKE '%", "\\'; --", "0x27204f52202731273d2731",
    ];

    private static readonly string[] Queries =
    [
        "?limit=0", "?limit=-1", "?limit=1000001", "?limit=abc", "?limit=1e3", "?cursor=' OR 1=1--", "?cursor=-5", "?cursor=99999999999999999999",
        "?from=2026-13-45&to=x", "?from=0001-01-01&to=9999-12-31", "?groupBy=week", "?groupBy=assistant&from=2020-01-01", "?q=' OR 1=1--",
        "?q=" + new string('q', 300), "?%zz=1", "?a=%ff%fe", "?limit=10&limit=20", "?cursor=", "?", "?&&&", "?groupBy=day;DROP TABLE x",
    ];

    private static readonly string[] ContentTypes =
    [
        "text/plain", "application/x-www-form-urlencoded", "application/json; charset=utf-16", "multipart/form-data; boundary=x",
        "application/problem+json", "*/*", "application/json; charset=\"", "application/xml",
    ];

    private readonly Credential[] credentials = BuildCredentials(targets);
    private int sequence;

    public HostileRequest Next()
    {
        sequence++;
        var endpoint = Pick(Endpoints);
        var credential = Pick(credentials);
        var method = Chance(85) ? endpoint.Method : Pick(Methods);
        var tricks = new List<string>();
        var target = Target(endpoint.Template, credential, method, tricks);
        var (body, chunked, contentType) = Body(endpoint.Body, method, tricks);
        var headers = new List<byte[]>(credential.Lines);
        if (contentType is not null) headers.Add(Encoding.ASCII.GetBytes("Content-Type: " + contentType));
        if (Chance(25)) AddIdempotencyKeyHeaders(headers, tricks);
        if (Chance(10)) headers.Add(Encoding.ASCII.GetBytes(Pick(["Accept: application/xml", "X-Forwarded-For: 10.0.0.1, ' OR 1=1", "X-HTTP-Method-Override: DELETE",
            "Expect: 100-continue", "Accept-Encoding: gzip, br", "Cookie: session=' OR 1=1", "Origin: null", "Range: bytes=0-1"])));
        return new HostileRequest(method, target, headers, body, chunked, credential.Name, credential.OrganizationId, string.Join(",", tricks));
    }

    private static Credential[] BuildCredentials(FuzzTargets targets)
    {
        static byte[] Line(string value) => Encoding.UTF8.GetBytes("Authorization: " + value);
        Credential Org(string name, string value, TestOrganization organization) => new(name, [Line(value)], organization.Id, false);
        var a = targets.A.Key;
        var operatorKey = TallyApi.OperatorKey;
        return
        [
            new("none", [], null, false),
            Org("A pk:sk", a.Bearer, targets.A), Org("A Bearer sk", a.BearerSecret, targets.A), Org("A bare sk", a.SecretKey, targets.A),
            Org("A pk:sk", a.Bearer, targets.A), Org("A read-only", targets.AReadOnly.Bearer, targets.A), Org("A write-only", targets.AWriteOnly.BearerSecret, targets.A),
            Org("A revoked", targets.ARevoked.Bearer, targets.A), Org("B pk:sk", targets.B.Key.Bearer, targets.B), Org("B bare sk", targets.B.Key.SecretKey, targets.B),
            Org("disabled organization's key", targets.Disabled.Key.Bearer, targets.Disabled), Org("deleted organization's key", targets.Deleted.Key.Bearer, targets.Deleted),
            new("operator", [Line("Bearer " + operatorKey)], null, true), new("operator", [Line("Bearer " + operatorKey)], null, true),
            new("operator in lower case scheme", [Line("bearer " + operatorKey)], null, true),
            new("empty", [Line("")], null, false), new("'Bearer'", [Line("Bearer")], null, false), new("'Bearer '", [Line("Bearer ")], null, false),
            new("Basic", [Line("Basic dXNlcjpwYXNzd29yZA==")], null, false), new("Basic operator", [Line("Basic " + operatorKey)], null, false),
            new("bare operator key", [Line(operatorKey)], null, false), new("operator key plus a character", [Line("Bearer " + operatorKey + "x")], null, false),
            new("Token scheme", [Line("Token " + a.SecretKey)], null, false), new("public key only", [Line("Bearer " + a.PublicKey)], null, false),
            new("pk:", [Line($"Bearer {a.PublicKey}:")], null, false), new(":sk", [Line($"Bearer :{a.SecretKey}")], null, false),
            new("pk:sk:extra", [Line($"Bearer {a.Bearer[7..]}:extra")], null, false), new("space inside the secret", [Line($"Bearer {a.SecretKey[..10]} {a.SecretKey[10..]}")], null, false),
            new("upper-case SK_", [Line("SK_" + a.SecretKey[3..])], null, false), new("secret and a symbol", [Line(a.SecretKey + "!")], null, false),
            new("unknown well-formed secret", [Line("Bearer sk_" + new string('0', 40))], null, false),
            new("B's public part with A's secret", [Line($"Bearer {targets.B.Key.PublicKey}:{a.SecretKey}")], null, false),
            new("8 KiB", [Line("Bearer sk_" + new string('a', 8 * 1024))], null, false), new("600 characters", [Line("Bearer sk_" + new string('b', 600))], null, false),
            new("non-ASCII", [Line(a.Bearer + "\u00e9")], null, false), new("SQL in the secret", [Line("Bearer sk_' OR '1'='1")], null, false),
            new("SQL in the public part", [Line("Bearer pk_x' OR 1=1--:" + a.SecretKey)], null, false),
            new("two Authorization headers", [Line(a.Bearer), Line(a.Bearer)], null, false),
            new("A's secret and the operator's", [Line(a.Bearer), Line("Bearer " + operatorKey)], null, false),
            new("invalid UTF-8", [[.. Line("Bearer sk_"), 0xFF, 0xFE, 0xC3, 0x28]], null, false),
            new("tab inside", [Line("Bearer\t" + a.SecretKey)], null, false),
            new("NUL inside", [[.. Line("Bearer sk_"), 0x00, .. "abc"u8]], null, false),
            new("control character inside", [[.. Line("Bearer sk_"), 0x01, .. "abc"u8]], null, false),
        ];
    }

    /// <summary>The request target: the template with ids filled in, then perhaps one or two path tricks.</summary>
    private byte[] Target(string template, Credential credential, string method, List<string> tricks)
    {
        var path = template
            .Replace("{consumption}", Id([targets.AConsumption, targets.BConsumption], tricks))
            .Replace("{hold}", Id([targets.AHold, targets.BHold], tricks))
            .Replace("{id}", Id(OrganizationIds(credential, method), tricks))
            .Replace("{keyId}", Id([targets.Sacrificial.Key.Id, targets.A.Key.Id, targets.B.Key.Id], tricks))
            .Replace("{assistantId}", Id([targets.SacrificialAssistant, targets.AAssistant], tricks));
        var target = Encoding.UTF8.GetBytes(path);
        var trickCount = Chance(45) ? (Chance(70) ? 1 : 2) : 0;
        for (var trick = 0; trick < trickCount; trick++) target = Trick(target, tricks);
        return target;
    }

    /// <summary>
    /// The operator may change only the sacrificial organization (and read any); every other credential may aim
    /// anywhere, since it must be refused.
    /// </summary>
    private string[] OrganizationIds(Credential credential, string method) =>
        credential.IsOperator && method is not ("GET" or "HEAD")
            ? [targets.Sacrificial.Id]
            : [targets.A.Id, targets.B.Id, targets.Disabled.Id, targets.Deleted.Id, targets.Sacrificial.Id];

    private string Id(string[] real, List<string> tricks)
    {
        if (Chance(60)) return Pick(real);
        var garbage = Pick([
            Guid.NewGuid().ToString(), "org-" + Guid.NewGuid(), Pick(SqlStrings), new string('9', 300), "..", ".", "%2e%2e", "caf\u00e9",
            "\U0001F600", "", " ", "null", "-1", "0", "{id}", "<script>alert(1)</script>", "a/b", "a%2Fb", "../admin/verify",
        ]);
        tricks.Add("garbage id");
        if (Chance(90)) return Uri.EscapeDataString(garbage);
        tricks.Add("raw id");
        return garbage;
    }

    private byte[] Trick(byte[] target, List<string> tricks)
    {
        var text = Encoding.Latin1.GetString(target);
        // Bytes Kestrel's parser refuses (raw non-UTF-8, an encoded NUL) test Kestrel more than Tally, so they come less often.
        var trick = random.Next(14);
        if (trick is 9 or 10 && Chance(60)) trick = 11;
        switch (trick)
        {
            case 0: tricks.Add("../"); return Latin1("/v1/../" + text.TrimStart('/'));
            case 1: tricks.Add("%2e%2e"); return Latin1(Pick(["/v1/%2e%2e", "/chat/%2E%2E", "/x/%2e%2e/%2e%2e", "/api/v1/agents/.%2e"]) + text);
            case 2: tricks.Add("encoded slash"); return Latin1(ReplaceOne(text, "/", Pick(["%2F", "%2f", "%252F"])));
            case 3: tricks.Add("double slash"); return Latin1(ReplaceOne(text, "/", "//"));
            case 4: tricks.Add("upper case"); return Latin1(text.ToUpperInvariant());
            case 5: tricks.Add("trailing"); return Latin1(text + Pick(["/", "/.", "/..", "/%2e", ";x=1", "%20"]));
            case 6: tricks.Add("percent-encoded letters"); return Latin1(string.Concat(text.Select(character => char.IsAsciiLetter(character) && Chance(30) ? $"%{(int)character:X2}" : character.ToString())));
            case 7: tricks.Add("long path"); return Latin1(text + "/" + new string('a', random.Next(100, 9_000)));
            case 8: tricks.Add("encoded invalid UTF-8"); return Latin1(text + Pick(["%C3%28", "%FF%FE", "%E2%82", "%C0%AF", "%ED%A0%80"]));
            case 9:
                tricks.Add("raw invalid UTF-8");
                return [.. target, .. Pick<byte[]>([[0xC3, 0x28], [0xFF], [0xE2, 0x82], [0x80]])];
            case 10: tricks.Add("%00"); return Latin1(text + "%00");
            case 11: tricks.Add("query"); return Latin1(text + Pick(Queries));
            case 12: tricks.Add("backslash"); return Latin1(ReplaceOne(text, "/", "\\"));
            default: tricks.Add("SQL segment"); return Latin1(text + "/" + Uri.EscapeDataString(Pick(SqlStrings)));
        }
    }

    private (byte[]? Body, bool Chunked, string? ContentType) Body(BodyKind kind, string method, List<string> tricks)
    {
        if (method is "GET" or "HEAD" or "get" && kind == BodyKind.None && Chance(85)) return (null, false, null);
        var roll = random.Next(100);
        byte[]? body;
        switch (roll)
        {
            case < 8: tricks.Add("no body"); body = null; break;
            case < 12: tricks.Add("empty body"); body = []; break;
            case < 22: tricks.Add("random bytes"); body = RandomBytes(random.Next(1, RandomBodyBytesMax)); break;
            case < 67: tricks.Add("mutated JSON"); body = Mutated(Valid(kind), tricks); break;
            case < 82: tricks.Add("hostile value"); body = WithHostileValue(Valid(kind), tricks); break;
            case < 88: tricks.Add("deep nesting"); body = DeeplyNested(); break;
            case < 94: tricks.Add("over 64 KiB"); body = Oversized(); break;
            default: tricks.Add("invalid UTF-8 in a string"); body = WithInvalidUtf8(Valid(kind)); break;
        }
        var chunked = body is { Length: > 0 } && Chance(10);
        if (chunked) tricks.Add("chunked");
        var contentType = body is null ? null : Chance(65) ? "application/json" : Chance(30) ? null : Pick(ContentTypes);
        return (body, chunked, contentType);
    }

    /// <summary>A valid body for the endpoint, with a fresh idempotency key, before any mutation.</summary>
    private JsonObject Valid(BodyKind kind)
    {
        var key = $"fuzz-{sequence}";
        return kind switch
        {
            BodyKind.Consume => new JsonObject { ["credits"] = 1, ["idempotencyKey"] = key, ["assistantId"] = targets.AAssistant, ["identifier"] = "conversation-7", ["metadata"] = new JsonObject { ["channel"] = "web" } },
            BodyKind.Refund => new JsonObject { ["credits"] = 1, ["idempotencyKey"] = key },
            BodyKind.Hold => new JsonObject { ["credits"] = 5, ["idempotencyKey"] = key, ["ttlSeconds"] = 60 },
            BodyKind.Capture => new JsonObject { ["credits"] = 5, ["idempotencyKey"] = key },
            BodyKind.Release => new JsonObject { ["idempotencyKey"] = key },
            BodyKind.Organization => new JsonObject { ["name"] = "Fuzz " + sequence, ["externalId"] = key },
            BodyKind.OrganizationPatch => new JsonObject { ["name"] = "Renamed", ["status"] = "active" },
            BodyKind.Key => new JsonObject { ["name"] = "fuzz", ["scopes"] = new JsonArray("balance:read") },
            BodyKind.Subscription => new JsonObject { ["plan"] = "pro", ["creditsPerPeriod"] = 100, ["period"] = "month", ["anchor"] = "2026-01-01T00:00:00Z", ["rolloverMax"] = 0 },
            BodyKind.Grant => new JsonObject { ["credits"] = 100, ["idempotencyKey"] = key, ["source"] = "promo", ["priority"] = 1, ["expiresAt"] = "2030-01-01T00:00:00Z", ["reason"] = "fuzz" },
            BodyKind.Assistant => new JsonObject { ["name"] = "Fuzz bot" },
            _ => new JsonObject(),
        };
    }

    private JsonNode? HostileValue() => random.Next(24) switch
    {
        0 => -1, 1 => 0, 2 => long.MaxValue, 3 => JsonNode.Parse("1e308"), 4 => JsonNode.Parse("123456789012345678901234567890"), 5 => 1.5,
        6 => "1", 7 => "", 8 => new string('x', 300), 9 => new string('y', 5_000), 10 => Pick(SqlStrings), 11 => null, 12 => true,
        13 => new JsonArray(), 14 => new JsonObject(), 15 => "\u0000", 16 => "\U0001F600", 17 => "../../etc/passwd", 18 => "2026-13-45T99:99:99Z",
        19 => "9999-12-31T23:59:59Z", 20 => JsonNode.Parse("-0"), 21 => 1_000_000_000_001, 22 => new JsonObject { ["$gt"] = "" },
        _ => JsonNode.Parse("[" + string.Join(",", Enumerable.Repeat("1", 1000)) + "]"),
    };

    private byte[] WithHostileValue(JsonObject body, List<string> tricks)
    {
        var names = body.Select(pair => pair.Key).Concat(["credits", "idempotencyKey", "metadata", "ttlSeconds", "name", "scopes"]).Distinct().ToList();
        var name = Pick(names.ToArray());
        tricks.Add("hostile " + name);
        body[name] = HostileValue();
        return Serialize(body);
    }

    private byte[] Mutated(JsonObject body, List<string> tricks)
    {
        if (Chance(30) && body.Count > 0)
        {
            var removed = Pick(body.Select(pair => pair.Key).ToArray());
            body.Remove(removed);
            tricks.Add("without " + removed);
        }
        if (Chance(15)) body["unexpected" + random.Next(3)] = HostileValue();
        var text = Encoding.UTF8.GetString(Serialize(body));
        var mutations = random.Next(1, 4);
        for (var mutation = 0; mutation < mutations; mutation++) text = MutateText(text, tricks);
        return Encoding.UTF8.GetBytes(text);
    }

    private string MutateText(string text, List<string> tricks)
    {
        var at = text.Length == 0 ? 0 : random.Next(text.Length);
        switch (random.Next(8))
        {
            case 0: tricks.Add("deleted character"); return text.Length == 0 ? text : text.Remove(at, 1);
            case 1: tricks.Add("inserted character"); return text.Insert(at, Pick(["{", "}", "[", "]", "\"", ":", ",", "\\", "0", "-", " ", "\u0001", "\u00e9", "\u2028", "'", "\\ud800"]));
            case 2: tricks.Add("truncated"); return text[..at];
            case 3: tricks.Add("duplicate field"); return text.StartsWith('{') ? "{\"credits\":5," + text[1..] : text;
            case 4: tricks.Add("in an array"); return "[" + text + "]";
            case 5: tricks.Add("trailing garbage"); return text + Pick(["}", ",", "null", "{}", "\u0000", " \n\t "]);
            case 6: tricks.Add("swapped quotes"); return text.Replace('"', '\'');
            default: tricks.Add("comment"); return text.Insert(at, "/* x */");
        }
    }

    private byte[] DeeplyNested()
    {
        var depth = random.Next(17, 30_000);
        var asMetadata = Chance(50);
        var open = asMetadata ? "{\"idempotencyKey\":\"deep\",\"metadata\":" : "";
        var close = asMetadata ? "}" : "";
        return Encoding.ASCII.GetBytes(open + string.Concat(Enumerable.Repeat(Chance(50) ? "[" : "{\"a\":", depth)) + "1" + new string(']', depth) + close);
    }

    private byte[] Oversized()
    {
        var size = random.Next(64 * 1024 + 1, OversizedBodyBytesMax);
        return Encoding.ASCII.GetBytes("{\"idempotencyKey\":\"big\",\"identifier\":\"" + new string('x', size) + "\"}");
    }

    private byte[] WithInvalidUtf8(JsonObject body)
    {
        body["identifier"] = "INVALID";
        body["idempotencyKey"] = "KEY-INVALID";
        var bytes = Serialize(body).ToList();
        var bad = Pick<byte[]>([[0xFF], [0xC3, 0x28], [0xED, 0xA0, 0x80], [0xF8, 0x88, 0x80, 0x80, 0x80], [0xC0, 0xAF]]);
        var text = Encoding.ASCII.GetString(bytes.ToArray());
        var position = text.IndexOf(Chance(50) ? "INVALID" : "KEY-", StringComparison.Ordinal);
        bytes.InsertRange(position, bad);
        return [.. bytes];
    }

    /// <summary>Adds Idempotency-Key header lines: usable, hostile, or bytes Kestrel's parser refuses.</summary>
    private void AddIdempotencyKeyHeaders(List<byte[]> headers, List<string> tricks)
    {
        tricks.Add("Idempotency-Key header");
        byte[] value = random.Next(10) switch
        {
            0 or 1 => Encoding.ASCII.GetBytes($"fuzz-header-{sequence}"),
            2 => Encoding.ASCII.GetBytes(Pick(SqlStrings)),
            3 => Encoding.ASCII.GetBytes(new string('k', 200)),
            4 => [],
            5 => Encoding.UTF8.GetBytes("caf\u00e9"),
            6 => Chance(30) ? [0xFF, 0xFE] : Encoding.ASCII.GetBytes(" padded "),
            7 => [.. "a"u8, 0x01, .. "b"u8],
            _ => Encoding.ASCII.GetBytes("fuzz-body-key-mismatch"),
        };
        headers.Add([.. "Idempotency-Key: "u8, .. value]);
        if (Chance(20)) headers.Add(Encoding.ASCII.GetBytes("Idempotency-Key: second"));
    }

    private static byte[] Serialize(JsonObject body) =>
        Encoding.UTF8.GetBytes(body.ToJsonString(new JsonSerializerOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));

    private byte[] RandomBytes(int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }

    private string ReplaceOne(string text, string what, string with)
    {
        var positions = Enumerable.Range(1, Math.Max(0, text.Length - 1)).Where(index => text.AsSpan(index).StartsWith(what)).ToList();
        if (positions.Count == 0) return text;
        var at = Pick(positions.ToArray());
        return text[..at] + with + text[(at + what.Length)..];
    }

    private static byte[] Latin1(string text) => Encoding.Latin1.GetBytes(text);

    private bool Chance(int percent) => random.Next(100) < percent;

    private T Pick<T>(T[] items) => items[random.Next(items.Length)];
}
