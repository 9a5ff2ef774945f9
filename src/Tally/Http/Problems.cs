using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Ledger.Engine;

namespace Tally.Http;

/// <summary>
/// RFC 9457 problem details with the stable `code` of SPEC §3.5. Every error of the native and admin
/// APIs is made here, so the envelope and the codes cannot drift apart.
/// </summary>
public static class Problems
{
    public const string TypeBase = "https://github.com/tally/tally/blob/main/docs/errors.md#";

    public static ProblemHttpResult Of(int status, string code, string title, string detail, IDictionary<string, string[]>? errors = null)
    {
        var extensions = new Dictionary<string, object?> { ["code"] = code };
        if (errors is not null) extensions["errors"] = errors;
        return TypedResults.Problem(detail, type: TypeBase + code, statusCode: status, title: title, extensions: extensions);
    }

    public static ProblemHttpResult Unauthorized(string detail) => Of(401, "unauthorized", "Unauthorized", detail);

    public static ProblemHttpResult Forbidden(string detail) => Of(403, "forbidden", "Forbidden", detail);

    public static ProblemHttpResult NotFound(string detail) => Of(404, "not_found", "Not found", detail);

    public static ProblemHttpResult Validation(IDictionary<string, string[]> errors) =>
        Of(400, "validation_failed", "The request is not valid",
            "Fix the fields listed in errors: " + string.Join(" ", errors.Select(pair => $"{pair.Key}: {string.Join(" ", pair.Value)}")), errors);

    public static ProblemHttpResult Validation(string field, string message) =>
        Validation(new Dictionary<string, string[]> { [field] = [message] });

    public static ProblemHttpResult PayloadTooLarge(long limitBytes) =>
        Of(413, "payload_too_large", "Payload too large", $"The request body is larger than {limitBytes} bytes.");

    public static ProblemHttpResult RateLimited(int retryAfterSeconds) =>
        Of(429, "rate_limited", "Too many requests", $"This key sent too many requests; retry after {retryAfterSeconds} second{(retryAfterSeconds == 1 ? "" : "s")}.");

    public static ProblemHttpResult Internal() =>
        Of(500, "internal", "Internal error", "Something went wrong on our side; nothing was charged. Retry with the same idempotency key.");

    /// <summary>Maps an engine error to its status and code.</summary>
    public static ProblemHttpResult From(LedgerError error) => error.Code switch
    {
        ErrorCode.NotFound => NotFound(error.Message),
        ErrorCode.ValidationFailed => Validation(error.Field ?? "request", error.Message),
        ErrorCode.InsufficientCredits => Of(402, CodeOf(error.Code), "Insufficient credits", error.Message),
        ErrorCode.NoActiveSubscription => Of(402, CodeOf(error.Code), "No active subscription", error.Message),
        ErrorCode.IdempotencyConflict => Of(409, CodeOf(error.Code), "Idempotency key reused", error.Message),
        ErrorCode.HoldExpired => Of(409, CodeOf(error.Code), "Hold expired", error.Message),
        ErrorCode.HoldAlreadySettled => Of(409, CodeOf(error.Code), "Hold already settled", error.Message),
        _ => Of(503, CodeOf(error.Code), "Service unavailable", error.Message),
    };

    /// <summary>An engine error's code as the API and docs/errors.md spell it (also the metrics' outcome label).</summary>
    public static string CodeOf(ErrorCode code) => code switch
    {
        ErrorCode.NotFound => "not_found",
        ErrorCode.ValidationFailed => "validation_failed",
        ErrorCode.InsufficientCredits => "insufficient_credits",
        ErrorCode.NoActiveSubscription => "no_active_subscription",
        ErrorCode.IdempotencyConflict => "idempotency_conflict",
        ErrorCode.HoldExpired => "hold_expired",
        ErrorCode.HoldAlreadySettled => "hold_already_settled",
        _ => "unavailable",
    };
}
