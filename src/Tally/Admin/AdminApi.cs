using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Auth;
using Tally.Balances;
using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Admin;

public sealed record OrganizationBody(string Name, string? ExternalId = null, string? IdempotencyKey = null);

public sealed record OrganizationPatchBody(string? Name = null, string? Status = null);

public sealed record KeyBody(string? Name = null, string[]? Scopes = null);

public sealed record SubscriptionBody(string Plan, long? CreditsPerPeriod, string Period, DateTimeOffset? Anchor = null, long? RolloverMax = null);

public sealed record GrantBody(long Credits, string? IdempotencyKey = null, string? Source = null, int? Priority = null, DateTimeOffset? ExpiresAt = null, string? Reason = null);

public sealed record AssistantBody(string Name);

public sealed record BalanceSummary(string SubscriptionStatus, long Total, long Used, long Remaining, long Held, bool Unlimited);

public sealed record OrganizationSummary(string Id, string Name, string? ExternalId, string Status, DateTimeOffset CreatedAt, BalanceSummary Balance);

/// <summary>The operator's API of SPEC §3.4: organizations, keys, subscriptions, grants, assistants, and the verify pass.</summary>
public static class AdminApi
{
    public static IEndpointRouteBuilder MapAdmin(this IEndpointRouteBuilder routes)
    {
        var admin = routes.MapGroup("/v1/admin").WithTags("Admin").AddEndpointFilter<AuditFilter>().AddEndpointFilter<OperatorKeyFilter>()
            .WithProblems(StatusCodes.Status401Unauthorized, StatusCodes.Status429TooManyRequests, StatusCodes.Status503ServiceUnavailable)
            .RequiresKey(BodyDocumentation.OperatorKeyScheme);
        admin.MapPost("/organizations", CreateOrganization).WithBody<OrganizationBody>().WithName("CreateOrganization");
        admin.MapGet("/organizations", ListOrganizations).WithName("ListOrganizations").WithProblems(StatusCodes.Status400BadRequest);
        admin.MapGet("/organizations/{id}", GetOrganization).WithName("GetOrganization").WithProblems(StatusCodes.Status404NotFound);
        admin.MapMethods("/organizations/{id}", ["PATCH"], UpdateOrganization).WithBody<OrganizationPatchBody>().WithName("UpdateOrganization").WithProblems(StatusCodes.Status404NotFound);
        admin.MapDelete("/organizations/{id}", DeleteOrganization).WithName("DeleteOrganization").WithProblems(StatusCodes.Status404NotFound);
        admin.MapPost("/organizations/{id}/keys", CreateKey).WithBody<KeyBody>().WithName("CreateKey").WithProblems(StatusCodes.Status404NotFound);
        admin.MapGet("/organizations/{id}/keys", ListKeys).WithName("ListKeys").WithProblems(StatusCodes.Status404NotFound);
        admin.MapDelete("/organizations/{id}/keys/{keyId}", RevokeKey).WithName("RevokeKey").WithProblems(StatusCodes.Status404NotFound);
        admin.MapPut("/organizations/{id}/subscription", PutSubscription).WithBody<SubscriptionBody>().WithName("PutSubscription").WithProblems(StatusCodes.Status404NotFound);
        admin.MapDelete("/organizations/{id}/subscription", CancelSubscription).WithName("CancelSubscription").WithProblems(StatusCodes.Status404NotFound);
        admin.MapPost("/organizations/{id}/grants", Grant).WithBody<GrantBody>().WithName("Grant").WithProblems(StatusCodes.Status404NotFound, StatusCodes.Status409Conflict);
        admin.MapPost("/organizations/{id}/assistants", AddAssistant).WithBody<AssistantBody>().WithName("AddAssistant").WithProblems(StatusCodes.Status404NotFound);
        admin.MapGet("/organizations/{id}/assistants", ListAssistants).WithName("ListAssistants").WithProblems(StatusCodes.Status404NotFound);
        admin.MapGet("/organizations/{id}/assistants/{assistantId}", GetAssistant).WithName("GetAssistant").WithProblems(StatusCodes.Status404NotFound);
        admin.MapDelete("/organizations/{id}/assistants/{assistantId}", RemoveAssistant).WithName("RemoveAssistant").WithProblems(StatusCodes.Status404NotFound);
        admin.MapGet("/organizations/{id}/balance", (string id, HttpContext context, LedgerEngine engine) => BalanceApi.GetBalance(id, context, engine))
            .WithName("AdminGetBalance").WithProblems(StatusCodes.Status404NotFound);
        admin.MapGet("/organizations/{id}/usage", (string id, HttpContext context, LedgerEngine engine, string? from, string? to, string? groupBy) =>
            BalanceApi.GetUsage(id, engine, from, to, groupBy, context.RequestAborted)).WithName("AdminGetUsage").WithProblems(StatusCodes.Status400BadRequest, StatusCodes.Status404NotFound);
        admin.MapGet("/organizations/{id}/ledger", (string id, HttpContext context, LedgerEngine engine, string? cursor, string? limit) =>
            BalanceApi.GetLedger(id, engine, cursor, limit, context.RequestAborted)).WithName("AdminGetLedger").WithProblems(StatusCodes.Status400BadRequest, StatusCodes.Status404NotFound);
        admin.MapGet("/audit", ListAudit).WithName("ListAudit").WithProblems(StatusCodes.Status400BadRequest).WithSummary("Admin actions, newest first.");
        admin.MapGet("/verify", Verify).WithName("Verify").WithSummary("Recomputes every balance from the ledger (SPEC §2 rule 10).");
        return routes;
    }

    public static async Task<Results<Created<OrganizationView>, Ok<OrganizationView>, ProblemHttpResult>> CreateOrganization(HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var name = body.String("name", Limits.TextLengthMax, required: true);
        var externalId = body.Label("externalId");
        // Optional: a provisioning script that retries a creation sends one, so that the retry makes no second organization.
        var key = body.IdempotencyKey(context.Request, optional: true);
        if (!body.IsValid) return body.Problem;
        var outcome = await engine.CreateOrganizationAsync(name!, externalId, key);
        if (outcome is { Succeeded: true, Replayed: false }) return TypedResults.Created($"/v1/admin/organizations/{outcome.Value!.Id}", outcome.Value);
        return Outcomes.Created(context, outcome);
    }

    public static async Task<Results<Ok<Page<OrganizationSummary>>, ProblemHttpResult>> ListOrganizations(
        LedgerEngine engine, string? cursor, string? limit, string? q, CancellationToken cancellationToken)
    {
        if (!Paging.TryParseLimit(limit, out var pageSize)) return Paging.LimitProblem;
        // The organizations' cursor is the last id of a page, as the ledger's is its last entry number.
        if (cursor is not null && !(cursor.StartsWith("org-", StringComparison.Ordinal) && Guid.TryParse(cursor.AsSpan(4), out _))) return Paging.CursorProblem;
        // No name holds a control character (BodyReader), so a search for one finds nothing; PostgreSQL refuses NUL.
        if (q is not null && (BodyReader.IsLongerThan(q, Limits.TextLengthMax) || BodyReader.HasControlCharacter(q)))
        {
            return Problems.Validation("q", $"Must be at most {Limits.TextLengthMax} characters, without control characters.");
        }
        var page = await engine.Store.ListOrganizationsAsync(cursor, pageSize, q, cancellationToken);
        var summaries = new List<OrganizationSummary>(page.Items.Count);
        foreach (var state in page.Items)
        {
            if (state.Status == OrganizationStatus.Deleted) continue;
            var figures = engine.FiguresOf(state);
            summaries.Add(new OrganizationSummary(state.Id, state.Name, state.ExternalId, Names.Of(state.Status), state.CreatedAt,
                new BalanceSummary(figures.Subscribed ? "active" : "none", figures.Total, figures.Used, figures.Remaining, figures.Held, figures.Unlimited)));
        }
        return TypedResults.Ok(new Page<OrganizationSummary>(summaries, page.NextCursor));
    }

    public static async Task<Results<Ok<OrganizationView>, ProblemHttpResult>> GetOrganization(string id, LedgerEngine engine, CancellationToken cancellationToken) =>
        await engine.GetOrganizationAsync(id, cancellationToken) is { } organization
            ? TypedResults.Ok(organization)
            : Problems.NotFound("The organization was not found.");

    public static async Task<Results<Ok<OrganizationView>, ProblemHttpResult>> UpdateOrganization(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var name = body.String("name", Limits.TextLengthMax);
        if (body.Has("name") && !body.IsNull("name") && string.IsNullOrWhiteSpace(name) && body.IsValid) body.Fail("name", "Must not be empty.");
        var statusText = body.String("status", Limits.TextLengthMax);
        OrganizationStatus? status = null;
        if (statusText is not null)
        {
            if (Names.TryParseStatus(statusText, out var parsed) && parsed != OrganizationStatus.Deleted) status = parsed;
            else body.Fail("status", "Must be active or disabled (DELETE the organization to delete it).");
        }
        if (!body.IsValid) return body.Problem;
        return Outcomes.Ok(context, await engine.UpdateOrganizationAsync(id, name, status));
    }

    public static async Task<Results<NoContent, ProblemHttpResult>> DeleteOrganization(string id, HttpContext context, LedgerEngine engine)
    {
        var outcome = await engine.DeleteOrganizationAsync(id);
        return outcome.Succeeded ? TypedResults.NoContent() : Outcomes.Problem(context, outcome.Error!);
    }

    public static async Task<Results<Created<ApiKeyCreated>, ProblemHttpResult>> CreateKey(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var name = body.String("name", Limits.TextLengthMax);
        var scopeNames = body.Strings("scopes", 8);
        var scopes = KeyScopes.All;
        if (scopeNames is not null && (!Names.TryParseScopes(scopeNames, out scopes) || scopes == KeyScopes.None))
        {
            body.Fail("scopes", "Must list one or both of balance:read and usage:write.");
        }
        if (!body.IsValid) return body.Problem;
        var outcome = await engine.CreateKeyAsync(id, name, scopes);
        if (!outcome.Succeeded) return Outcomes.Problem(context, outcome.Error!);
        return TypedResults.Created((string?)null, outcome.Value);
    }

    public static async Task<Results<Ok<IReadOnlyList<ApiKeyView>>, ProblemHttpResult>> ListKeys(string id, LedgerEngine engine, CancellationToken cancellationToken)
    {
        if (await engine.GetOrganizationAsync(id, cancellationToken) is null) return Problems.NotFound("The organization was not found.");
        var keys = await engine.Store.ListKeysAsync(id, cancellationToken);
        return TypedResults.Ok<IReadOnlyList<ApiKeyView>>(keys.Select(key => key.ToView()).ToList());
    }

    public static async Task<Results<Ok<ApiKeyView>, ProblemHttpResult>> RevokeKey(string id, string keyId, HttpContext context, LedgerEngine engine) =>
        Outcomes.Ok(context, await engine.RevokeKeyAsync(id, keyId));

    public static async Task<Results<Ok<SubscriptionView>, ProblemHttpResult>> PutSubscription(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var plan = body.String("plan", Limits.TextLengthMax, required: true);
        if (!body.Has("creditsPerPeriod")) body.Fail("creditsPerPeriod", "Is required: a whole number, or null for unlimited.");
        var creditsPerPeriod = body.Long("creditsPerPeriod", 0, Limits.GrantCreditsMax);
        // Read at any length, so that a wrong value is told the right ones, not a length.
        var periodText = body.String("period", Limits.TextLengthMax);
        if (!Names.TryParsePeriod(periodText, out var period)) body.Fail("period", "Must be day, week, month or year.");
        var anchor = body.Time("anchor");
        var rolloverMax = body.Long("rolloverMax", 0, Limits.GrantCreditsMax) ?? 0;
        if (!body.IsValid) return body.Problem;
        return Outcomes.Ok(context, await engine.PutSubscriptionAsync(id, new SubscriptionRequest(plan!, creditsPerPeriod, period, anchor, rolloverMax)));
    }

    public static async Task<Results<Ok<SubscriptionView>, ProblemHttpResult>> CancelSubscription(string id, HttpContext context, LedgerEngine engine) =>
        Outcomes.Ok(context, await engine.CancelSubscriptionAsync(id));

    public static async Task<Results<Created<GrantView>, Ok<GrantView>, ProblemHttpResult>> Grant(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var credits = body.RequiredLong("credits", 1, Limits.GrantCreditsMax);
        var key = body.IdempotencyKey(context.Request);
        var sourceText = body.String("source", Limits.TextLengthMax);
        var source = GrantSource.Topup;
        if (sourceText is not null && (!Names.TryParseSource(sourceText, out source) || source is GrantSource.Allowance or GrantSource.Rollover))
        {
            body.Fail("source", "Must be topup, promo or adjustment (allowance and rollover come from the subscription).");
        }
        var priority = body.Long("priority", -1_000_000, 1_000_000) ?? 0;
        var expiresAt = body.Time("expiresAt");
        var reason = body.Label("reason", lineBreaksAllowed: true);
        if (!body.IsValid) return body.Problem;
        return Outcomes.Created(context, await engine.GrantAsync(new GrantRequest(id, credits!.Value, key!, source, (int)priority, expiresAt, reason)));
    }

    public static async Task<Results<Created<AssistantView>, ProblemHttpResult>> AddAssistant(string id, HttpContext context, LedgerEngine engine)
    {
        var (body, problem) = await BodyReader.ReadAsync(context.Request);
        if (body is null) return problem!;
        var name = body.String("name", Limits.TextLengthMax, required: true);
        if (!body.IsValid) return body.Problem;
        var outcome = await engine.AddAssistantAsync(id, name!);
        if (!outcome.Succeeded) return Outcomes.Problem(context, outcome.Error!);
        return TypedResults.Created($"/v1/admin/organizations/{id}/assistants/{outcome.Value!.Id}", outcome.Value);
    }

    public static async Task<Results<Ok<IReadOnlyList<AssistantView>>, ProblemHttpResult>> ListAssistants(string id, LedgerEngine engine, CancellationToken cancellationToken)
    {
        var state = await engine.ReadLiveOrganizationAsync(id, cancellationToken);
        if (state is null) return Problems.NotFound("The organization was not found.");
        return TypedResults.Ok<IReadOnlyList<AssistantView>>(state.Assistants.Select(View).ToList());
    }

    public static async Task<Results<Ok<AssistantView>, ProblemHttpResult>> GetAssistant(
        string id, string assistantId, LedgerEngine engine, CancellationToken cancellationToken)
    {
        var state = await engine.ReadLiveOrganizationAsync(id, cancellationToken);
        if (state is null) return Problems.NotFound("The organization was not found.");
        var assistant = state.Assistants.FirstOrDefault(assistant => assistant.Id == assistantId);
        return assistant is null ? Problems.NotFound("The assistant was not found.") : TypedResults.Ok(View(assistant));
    }

    private static AssistantView View(AssistantState assistant) => new(assistant.Id, assistant.Name, assistant.CreatedAt);

    public static async Task<Results<NoContent, ProblemHttpResult>> RemoveAssistant(string id, string assistantId, HttpContext context, LedgerEngine engine)
    {
        var outcome = await engine.RemoveAssistantAsync(id, assistantId);
        return outcome.Succeeded ? TypedResults.NoContent() : Outcomes.Problem(context, outcome.Error!);
    }

    public static async Task<Results<Ok<Page<AuditEntryView>>, ProblemHttpResult>> ListAudit(
        LedgerEngine engine, string? cursor, string? limit, CancellationToken cancellationToken)
    {
        if (!Paging.TryParseLimit(limit, out var pageSize)) return Paging.LimitProblem;
        if (!Paging.IsCursor(cursor)) return Paging.CursorProblem;
        return TypedResults.Ok(await engine.Store.ListAuditAsync(cursor, pageSize, cancellationToken));
    }

    public static async Task<Ok<VerifyReport>> Verify(LedgerEngine engine, CancellationToken cancellationToken) =>
        TypedResults.Ok(await engine.Store.VerifyAsync(cancellationToken));
}
