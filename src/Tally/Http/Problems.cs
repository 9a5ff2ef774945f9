using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Ledger.Engine;

namespace Tally.Http;

/// <summary>
/// RFC 9457 problem details with the stable `code` of SPEC §3.5. Every error of the native and admin
/// APIs is made here, so the envelope and the codes cannot drift apart.
/// </summary>
public static class Problems
{
    /// <summary>
    /// A problem's `type`, relative to the server that answered (RFC 9457 allows a relative reference): its /errors
    /// serves docs/errors.md, which lists every code.
    /// </summary>
    public const string TypeBase = "/errors#";

    public static ProblemHttpResult Of(int status, string code, string title, string detail, IDictionary<string, string[]>? errors = null)
    {
        var extensions = new Dictionary<string, object?> { ["code"] = code };
        if (errors is not null) extensions["errors"] = errors;
        return TypedResults.Problem(detail, type: TypeBase + code, statusCode: status, title: title, extensions: extensions);
    }

    public static ProblemHttpResult Unauthorized(string detail) => Of(401, "unauthorized", "Unauthorized", detail);

    public static ProblemHttpResult Forbidden(string detail) => Of(403, "forbidden", "Forbidden", detail);

    public static ProblemHttpResult NotFound(string detail) => Of(ErrorCode.NotFound, detail);

    /// <summary>The store or the writer cannot take the request now (503 `unavailable`); the client retries.</summary>
    public static ProblemHttpResult Unavailable(string detail) => Of(ErrorCode.StoreFailure, detail);

    public static ProblemHttpResult Validation(IDictionary<string, string[]> errors) =>
        Of(ErrorCode.ValidationFailed,
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
    public static ProblemHttpResult From(LedgerError error)
    {
        if (error.Code == ErrorCode.ValidationFailed) return Validation(error.Field ?? "request", error.Message);
        return Of(error.Code, error.Message);
    }

    private static ProblemHttpResult Of(ErrorCode error, string detail, IDictionary<string, string[]>? errors = null)
    {
        var (status, code, title) = Describe(error);
        return Of(status, code, title, detail, errors);
    }

    /// <summary>An engine error's code as the API and docs/errors.md spell it (also the metrics' outcome label).</summary>
    public static string CodeOf(ErrorCode code) => Describe(code).Code;

    /// <summary>Each engine error's status, code and title, in one place for the answers and the metrics.</summary>
    private static (int Status, string Code, string Title) Describe(ErrorCode code) => code switch
    {
        ErrorCode.NotFound => (404, "not_found", "Not found"),
        ErrorCode.ValidationFailed => (400, "validation_failed", "The request is not valid"),
        ErrorCode.InsufficientCredits => (402, "insufficient_credits", "Insufficient credits"),
        ErrorCode.NoActiveSubscription => (402, "no_active_subscription", "No active subscription"),
        ErrorCode.IdempotencyConflict => (409, "idempotency_conflict", "Idempotency key reused"),
        ErrorCode.HoldExpired => (409, "hold_expired", "Hold expired"),
        ErrorCode.HoldAlreadySettled => (409, "hold_already_settled", "Hold already settled"),
        _ => (503, "unavailable", "Service unavailable"),
    };
}
