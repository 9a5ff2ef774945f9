using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Auth;
using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Consumptions;

/// <summary>The request body, for the API reference; bodies are read field by field by <see cref="BodyReader"/>.</summary>
public sealed record ConsumeBody(long? Credits = null, string? IdempotencyKey = null, string? AssistantId = null, string? Identifier = null, Dictionary<string, string>? Metadata = null);

public sealed record RefundBody(long? Credits = null, string? IdempotencyKey = null);

public static class ConsumptionApi
{
    public static RouteGroupBuilder MapConsumptions(this RouteGroupBuilder organization)
    {
        organization.MapPost("/consumptions", Consume)
            .WithMetadata(new RequiredScope(KeyScopes.UsageWrite, OrganizationRead.None)).WithBody<ConsumeBody>()
            .WithName("Consume").WithProblems(StatusCodes.Status402PaymentRequired, StatusCodes.Status409Conflict).WithSummary("Spends credits exactly once; 402 when they do not suffice.");
        organization.MapPost("/consumptions/{id}/refunds", Refund)
            .WithMetadata(new RequiredScope(KeyScopes.UsageWrite, OrganizationRead.None)).WithBody<RefundBody>()
            .WithName("Refund").WithProblems(StatusCodes.Status409Conflict).WithSummary("Gives credits of a consumption back to the grants they came from.");
        return organization;
    }

    public static async Task<Results<Created<ConsumptionReceipt>, Ok<ConsumptionReceipt>, ProblemHttpResult>> Consume(
        HttpContext context, LedgerEngine engine, Operations.TallyMetrics metrics)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var credits = body.Long("credits", 1, Limits.OperationCreditsMax) ?? 1;
        var key = body.IdempotencyKey(context.Request);
        var assistantId = body.Label("assistantId");
        var identifier = body.Label("identifier");
        var metadata = body.Metadata("metadata");
        if (!body.IsValid) return body.Problem;
        var request = new ConsumeRequest(context.Caller().OrganizationId, credits, key!, assistantId, identifier, metadata);
        var outcome = await engine.ConsumeAsync(request);
        metrics.Consumption(outcome.Error is { } error ? Problems.CodeOf(error.Code) : outcome.Replayed ? "replayed" : "created");
        return Outcomes.Created(context, outcome);
    }

    public static async Task<Results<Created<RefundReceipt>, Ok<RefundReceipt>, ProblemHttpResult>> Refund(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var credits = body.Long("credits", 1, Limits.OperationCreditsMax);
        var key = body.IdempotencyKey(context.Request);
        if (!body.IsValid) return body.Problem;
        return Outcomes.Created(context, await engine.RefundAsync(context.Caller().OrganizationId, id, credits, key!));
    }
}
