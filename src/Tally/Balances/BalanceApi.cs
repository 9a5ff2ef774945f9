using System.Globalization;
using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Auth;
using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Balances;

public sealed record UsageReport(
    string OrganizationId, DateTimeOffset From, DateTimeOffset To, string GroupBy, long Consumed, long Refunded, long Net, long Count,
    IReadOnlyList<UsageBucket> Buckets);

/// <summary>Balance, usage and ledger reads: the same handlers serve an organization's key and the operator.</summary>
public static class BalanceApi
{
    /// <summary>Longest usage window in one request: a year of daily buckets is 366 rows.</summary>
    public static readonly TimeSpan UsageWindowMax = TimeSpan.FromDays(366);

    public static RouteGroupBuilder MapBalances(this RouteGroupBuilder organization)
    {
        // The organization's state as authentication read it (the filter answered 404 had there been none),
        // rather than a second read of the same state: on PostgreSQL that is a query per balance check.
        organization.MapGet("/balance", Results<Ok<BalanceView>, ProblemHttpResult> (HttpContext context, LedgerEngine engine) =>
                TypedResults.Ok(engine.BalanceOf(context.Caller().Organization!)))
            .WithMetadata(new RequiredScope(KeyScopes.BalanceRead, OrganizationRead.State)).WithName("GetBalance").WithSummary("The organization's balance in the current period.");
        organization.MapGet("/usage", (HttpContext context, LedgerEngine engine, string? from, string? to, string? groupBy) =>
                GetUsage(context.Caller().OrganizationId, engine, from, to, groupBy, context.RequestAborted))
            .WithMetadata(new RequiredScope(KeyScopes.BalanceRead)).WithName("GetUsage").WithProblems(StatusCodes.Status400BadRequest).WithSummary("Credits consumed and refunded, by day or by assistant.");
        organization.MapGet("/ledger", (HttpContext context, LedgerEngine engine, string? cursor, string? limit) =>
                GetLedger(context.Caller().OrganizationId, engine, cursor, limit, context.RequestAborted))
            .WithMetadata(new RequiredScope(KeyScopes.BalanceRead)).WithName("GetLedger").WithProblems(StatusCodes.Status400BadRequest).WithSummary("The organization's ledger entries, newest first.");
        return organization;
    }

    public static async Task<Results<Ok<BalanceView>, ProblemHttpResult>> GetBalance(string organizationId, HttpContext context, LedgerEngine engine) =>
        Outcomes.Ok(context, await engine.GetBalanceAsync(organizationId, context.RequestAborted));

    public static async Task<Results<Ok<UsageReport>, ProblemHttpResult>> GetUsage(
        string organizationId, LedgerEngine engine, string? from, string? to, string? groupBy, CancellationToken cancellationToken)
    {
        var balance = await engine.GetBalanceAsync(organizationId, cancellationToken);
        if (!balance.Succeeded) return Problems.From(balance.Error!);
        var now = LedgerEngine.WholeMilliseconds(engine.Time.GetUtcNow());
        var errors = new Dictionary<string, string[]>();
        var start = ParseTime(from, "from", errors) ?? balance.Value!.Subscription.PeriodStart ?? now.AddDays(-30);
        var end = ParseTime(to, "to", errors) ?? now.AddSeconds(1);
        if (groupBy is not (null or "day" or "assistant")) errors["groupBy"] = ["Must be day or assistant."];
        if (errors.Count == 0 && (end <= start || end - start > UsageWindowMax))
        {
            // Named by what was sent: a window whose other end is a default says which default it met.
            var window = (from, to) switch
            {
                (null, _) => $"Must be after from, which defaults to the current period's start ({start:yyyy-MM-dd'T'HH:mm:ss.fff'Z'}), and at most 366 days after it.",
                (_, null) => "from must be before to, which defaults to now, and at most 366 days before it.",
                _ => "Must be after from, and at most 366 days after it.",
            };
            errors[to is null ? "from" : "to"] = [window];
        }
        if (errors.Count > 0) return Problems.Validation(errors);
        var byAssistant = groupBy == "assistant";
        var buckets = await engine.Store.UsageAsync(organizationId, start, end, byAssistant, cancellationToken);
        long consumed = buckets.Sum(bucket => bucket.Consumed), refunded = buckets.Sum(bucket => bucket.Refunded);
        return TypedResults.Ok(new UsageReport(organizationId, start, end, byAssistant ? "assistant" : "day", consumed, refunded,
            consumed - refunded, buckets.Sum(bucket => bucket.Count), buckets));
    }

    public static async Task<Results<Ok<Page<LedgerEntryView>>, ProblemHttpResult>> GetLedger(
        string organizationId, LedgerEngine engine, string? cursor, string? limit, CancellationToken cancellationToken)
    {
        if (await engine.GetOrganizationAsync(organizationId, cancellationToken) is null) return Problems.NotFound("The organization was not found.");
        if (!Paging.IsCursor(cursor)) return Paging.CursorProblem;
        if (!Paging.TryParseLimit(limit, out var pageSize)) return Paging.LimitProblem;
        return TypedResults.Ok(await engine.Store.ListEntriesAsync(organizationId, cursor, pageSize, cancellationToken));
    }

    private static DateTimeOffset? ParseTime(string? text, string field, Dictionary<string, string[]> errors)
    {
        if (text is null) return null;
        if (Times.TryParse(text, out var time)) return time;
        errors[field] = [$"Must be an ISO 8601 date or date and time, {Times.Range}."];
        return null;
    }
}


public static class Paging
{
    /// <summary>Cursors are the ids of the last row of a page, which only this server hands out.</summary>
    public static ProblemHttpResult CursorProblem => Problems.Validation("cursor", "Must be the nextCursor of a previous page.");

    public static bool IsCursor(string? text) => text is null || long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out _);

    public static ProblemHttpResult LimitProblem => Problems.Validation("limit", $"Must be a whole number from 1 to {Limits.PageSizeMax}.");

    public static bool TryParseLimit(string? text, out int limit)
    {
        limit = Limits.PageSizeDefault;
        if (text is null) return true;
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out limit) && limit is >= 1 and <= Limits.PageSizeMax;
    }
}
