using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Auth;
using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Holds;

public sealed record HoldBody(long Credits, string? IdempotencyKey = null, int? TtlSeconds = null, string? AssistantId = null, string? Identifier = null);

public sealed record CaptureBody(long Credits, string? IdempotencyKey = null);

public sealed record ReleaseBody(string? IdempotencyKey = null);

/// <summary>Holds reserve credits for a reply whose cost is known only afterwards (streaming), then capture or release them.</summary>
public static class HoldApi
{
    public static RouteGroupBuilder MapHolds(this RouteGroupBuilder organization)
    {
        organization.MapPost("/holds", PlaceHold)
            .WithMetadata(new RequiredScope(KeyScopes.UsageWrite, OrganizationRead.None)).WithBody<HoldBody>()
            .WithName("PlaceHold").WithProblems(StatusCodes.Status402PaymentRequired, StatusCodes.Status409Conflict).WithSummary("Reserves credits until captured, released or expired.");
        organization.MapPost("/holds/{id}/capture", Capture)
            .WithMetadata(new RequiredScope(KeyScopes.UsageWrite, OrganizationRead.None)).WithBody<CaptureBody>()
            .WithName("CaptureHold").WithProblems(StatusCodes.Status409Conflict).WithSummary("Charges up to the held credits; the rest is released.");
        organization.MapPost("/holds/{id}/release", Release)
            .WithMetadata(new RequiredScope(KeyScopes.UsageWrite, OrganizationRead.None)).WithBody<ReleaseBody>()
            .WithName("ReleaseHold").WithProblems(StatusCodes.Status409Conflict).WithSummary("Gives every held credit back.");
        return organization;
    }

    public static async Task<Results<Created<HoldReceipt>, Ok<HoldReceipt>, ProblemHttpResult>> PlaceHold(HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var credits = body.RequiredLong("credits", 1, Limits.OperationCreditsMax);
        var key = body.IdempotencyKey(context.Request);
        var ttlSeconds = body.Long("ttlSeconds", 1, Limits.HoldTtlSecondsMax) ?? Limits.HoldTtlSecondsDefault;
        var assistantId = body.Label("assistantId");
        var identifier = body.Label("identifier");
        if (!body.IsValid) return body.Problem;
        var request = new HoldRequest(context.Caller().OrganizationId, credits!.Value, key!, (int)ttlSeconds, assistantId, identifier);
        return Outcomes.Created(context, await engine.HoldAsync(request));
    }

    public static async Task<Results<Created<CaptureReceipt>, Ok<CaptureReceipt>, ProblemHttpResult>> Capture(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var credits = body.RequiredLong("credits", 1, Limits.OperationCreditsMax);
        var key = body.IdempotencyKey(context.Request);
        if (!body.IsValid) return body.Problem;
        return Outcomes.Created(context, await engine.CaptureAsync(context.Caller().OrganizationId, id, credits!.Value, key!));
    }

    public static async Task<Results<Created<ReleaseReceipt>, Ok<ReleaseReceipt>, ProblemHttpResult>> Release(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var key = body.IdempotencyKey(context.Request);
        if (!body.IsValid) return body.Problem;
        return Outcomes.Created(context, await engine.ReleaseAsync(context.Caller().OrganizationId, id, key!));
    }
}
