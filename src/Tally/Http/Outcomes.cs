using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Ledger.Engine;

namespace Tally.Http;

public static class Outcomes
{
    public const string ReplayedHeader = "Idempotent-Replayed";

    /// <summary>
    /// A new change is 201; a replay of an idempotency key is 200 with `Idempotent-Replayed: true` (rule 2);
    /// an error is its problem.
    /// </summary>
    public static Results<Created<T>, Ok<T>, ProblemHttpResult> Created<T>(HttpContext context, Outcome<T> outcome)
    {
        if (!outcome.Succeeded) return Problem(context, outcome.Error!);
        if (!outcome.Replayed) return TypedResults.Created((string?)null, outcome.Value);
        context.Response.Headers[ReplayedHeader] = "true";
        return TypedResults.Ok(outcome.Value);
    }

    public static Results<Ok<T>, ProblemHttpResult> Ok<T>(HttpContext context, Outcome<T> outcome) =>
        outcome.Succeeded ? TypedResults.Ok(outcome.Value) : Problem(context, outcome.Error!);

    /// <summary>Saturation and store failures are 503 with Retry-After, so clients back off and retry with the same key.</summary>
    public static ProblemHttpResult Problem(HttpContext context, LedgerError error)
    {
        if (error.Code is ErrorCode.Overloaded or ErrorCode.StoreFailure) context.Response.Headers.RetryAfter = "1";
        return Problems.From(error);
    }
}
