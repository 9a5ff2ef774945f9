using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;

namespace Tally.Tests.Infrastructure;

/// <summary>The three error envelopes of SPEC §3: one per API, chosen by the path the server routed.</summary>
public enum Api
{
    /// <summary>`/chat/…` (seeds/000, seeds/001): `{"Data":null,"Version":"1.0.0","Success":false,"Code":status,"Message":…}`.</summary>
    CreditsUsage,

    /// <summary>`/api/v1/agents/…` (seeds/002): `{"success":false,"message":…}`.</summary>
    CheckBalance,

    /// <summary>Everything else (`/v1`, the admin API, unknown paths): RFC 9457 problem+json with a stable `code`.</summary>
    Problem,
}

public static partial class Envelopes
{
    /// <summary>SPEC §3.5's codes, and those docs/errors.md adds.</summary>
    public static readonly IReadOnlySet<string> ProblemCodes = new HashSet<string>(StringComparer.Ordinal)
    {
        "unauthorized", "forbidden", "not_found", "validation_failed", "insufficient_credits", "no_active_subscription",
        "idempotency_conflict", "hold_expired", "hold_already_settled", "rate_limited", "payload_too_large", "method_not_allowed",
        "bad_request", "unavailable", "internal",
    };

    /// <summary>The API a path belongs to, matched by whole segments without regard to case, as the server matches it.</summary>
    public static Api ApiOf(string path)
    {
        var routed = new PathString(path);
        if (routed.StartsWithSegments("/chat")) return Api.CreditsUsage;
        if (routed.StartsWithSegments("/api/v1/agents")) return Api.CheckBalance;
        return Api.Problem;
    }

    /// <summary>
    /// Why <paramref name="reply"/> is not an error in <paramref name="api"/>'s envelope with this status (and,
    /// when given, this problem code), or null when it is. A reply to HEAD has no body, so only its type is checked.
    /// </summary>
    public static string? Mismatch(Api api, int status, RawHttp.RawReply reply, string? code = null, bool headOnly = false)
    {
        var expectedType = api == Api.Problem ? "application/problem+json" : "application/json";
        if (reply.ContentType != expectedType) return $"expected {expectedType}, got {reply.ContentType}";
        if (headOnly) return null;
        switch (api)
        {
            case Api.CreditsUsage:
                return CreditsUsageError().Match(reply.Text) is { Success: true } match && match.Groups["code"].Value == status.ToString()
                    ? null
                    : "expected the credits-usage envelope with Data null, Success false and Code = status";
            case Api.CheckBalance:
                var expected = status switch
                {
                    401 => "{\"success\":false,\"message\":\"Organization ID not found in request\"}",
                    404 => "{\"success\":false,\"message\":\"Agent not found or unauthorized\"}",
                    _ => null,
                };
                if (expected is not null) return expected == reply.Text ? null : "expected " + expected;
                return CheckBalanceError().IsMatch(reply.Text) ? null : "expected {\"success\":false,\"message\":…}";
            default:
                var problem = reply.Json;
                var actualCode = problem?["code"]?.GetValue<string>();
                if (code is not null ? actualCode != code : actualCode is null || !ProblemCodes.Contains(actualCode)) return $"expected code {code ?? "of SPEC §3.5"}, got {actualCode}";
                if (problem?["status"]?.GetValue<int>() != status) return "expected the status in the problem";
                if (problem?["detail"]?.GetValue<string>() is not { Length: > 0 }) return "expected a detail saying what to fix";
                if (actualCode == "validation_failed" && problem?["errors"] is not JsonObject { Count: > 0 }) return "expected the field errors";
                return null;
        }
    }

    [GeneratedRegex("^\\{\"Data\":null,\"Version\":\"1\\.0\\.0\",\"Success\":false,\"Code\":(?<code>\\d{3}),\"Message\":\"(?:[^\"\\\\]|\\\\.)+\"\\}$")]
    private static partial Regex CreditsUsageError();

    [GeneratedRegex("^\\{\"success\":false,\"message\":\"(?:[^\"\\\\]|\\\\.)+\"\\}$")]
    private static partial Regex CheckBalanceError();
}
