using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Auth;
using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Compatibility;

/// <summary>`Data` of the credits-usage envelope (seeds/000 and 001): PascalCase names exactly as published.</summary>
public sealed record CreditsUsage(
    [property: JsonPropertyName("Total")] long Total,
    [property: JsonPropertyName("Used")] long Used,
    [property: JsonPropertyName("Remain")] long Remain);

public sealed record CreditsUsageEnvelope(
    [property: JsonPropertyName("Data")] CreditsUsage? Data,
    [property: JsonPropertyName("Version")] string Version,
    [property: JsonPropertyName("Success")] bool Success,
    [property: JsonPropertyName("Code")] int Code,
    [property: JsonPropertyName("Message")] string Message)
{
    public static CreditsUsageEnvelope Error(int code, string message) => new(null, "1.0.0", false, code, message);
}

/// <summary>seeds/002, success: the organization's id and whether it may send messages.</summary>
public sealed record AgentBalance(
    [property: JsonPropertyName("success")] bool Success,
    [property: JsonPropertyName("organizationId")] string OrganizationId,
    [property: JsonPropertyName("hasCredits")] bool HasCredits,
    [property: JsonPropertyName("hasAssistant")] bool HasAssistant);

/// <summary>seeds/002 without an active subscription: 200 with success false, field order as published.</summary>
public sealed record AgentNoSubscription(
    [property: JsonPropertyName("success")] bool Success,
    [property: JsonPropertyName("hasCredits")] bool HasCredits,
    [property: JsonPropertyName("hasAssistant")] bool HasAssistant,
    [property: JsonPropertyName("message")] string Message);

public sealed record AgentError(
    [property: JsonPropertyName("success")] bool Success,
    [property: JsonPropertyName("message")] string Message)
{
    public static AgentError Of(string message) => new(false, message);
}

/// <summary>
/// The compatibility endpoints of SPEC §3.2: the balance as chatbot platforms already publish it. They
/// read the committed balance and never consume credits; their errors keep each contract's own envelope.
/// </summary>
public static class CompatibilityApi
{
    public const string AgentsUnauthorized = "Organization ID not found in request";
    public const string AgentsNotFound = "Agent not found or unauthorized";
    public const string AgentsNoSubscription = "No active subscription found for this organization";
    public const string InternalError = "Internal server error";

    public static IEndpointRouteBuilder MapCompatibility(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("").WithTags("Compatibility").RequiresKey(BodyDocumentation.OrganizationKeyScheme);
        // Both are singletons, taken once here: a handler parameter bound from services would open a dependency
        // injection scope on every request of the hottest endpoints.
        var credentials = routes.ServiceProvider.GetRequiredService<Credentials>();
        var engine = routes.ServiceProvider.GetRequiredService<LedgerEngine>();
        var usage = (HttpContext context) => GetMessageCreditsUsage(context, credentials, engine);
        var checkBalance = (HttpContext context) => CheckBalance(context, credentials, engine);
        // The seeds send `{}` (even on GET, with a form content type); the body is never read, so any body is accepted.
        // The handlers take the HttpContext alone (see above), so their responses are declared here for the
        // OpenAPI document: every status answers with the same envelope as success, as the seeds publish it.
        group.MapMethods("/chat/Chatbot/GetMessageCreditsUsage", ["GET", "POST"], usage)
            .WithName("GetMessageCreditsUsage")
            .WithSummary("Message credits usage in the envelope of chat.smarterbot.ai and NewOaks (seeds/000, seeds/001).")
            .Produces<CreditsUsageEnvelope>(StatusCodes.Status200OK)
            .ProducesErrors<CreditsUsageEnvelope>();
        group.MapGet("/api/v1/agents/check-balance", checkBalance)
            .WithName("CheckBalance")
            .WithSummary("Whether the organization may send messages, as agentsgt publishes it (seeds/002).")
            .WithDescription("Without an active subscription the answer is still 200, with success false, hasCredits false, " +
                "hasAssistant false and a message (the AgentNoSubscription schema).")
            .Produces<AgentBalance>(StatusCodes.Status200OK)
            .ProducesErrors<AgentError>();
        return routes;
    }

    /// <summary>The error statuses both endpoints answer, each in the endpoint's own envelope.</summary>
    private static readonly int[] ErrorStatuses =
    [
        StatusCodes.Status401Unauthorized, StatusCodes.Status403Forbidden, StatusCodes.Status404NotFound,
        StatusCodes.Status413PayloadTooLarge, StatusCodes.Status429TooManyRequests, StatusCodes.Status503ServiceUnavailable,
    ];

    private static RouteHandlerBuilder ProducesErrors<TEnvelope>(this RouteHandlerBuilder endpoint)
    {
        foreach (var status in ErrorStatuses) endpoint.Produces<TEnvelope>(status);
        return endpoint;
    }

    public static async Task<JsonBody<CreditsUsageEnvelope>> GetMessageCreditsUsage(HttpContext context, Credentials credentials, LedgerEngine engine)
    {
        var (caller, failure) = await credentials.AuthenticateOrganizationAsync(context, KeyScopes.BalanceRead, OrganizationRead.State);
        var refusal = failure switch
        {
            CredentialFailure.None => null,
            CredentialFailure.MissingScope => (403, "This key lacks the balance:read scope."),
            CredentialFailure.OrganizationUnavailable => (404, LedgerError.OrganizationUnavailable.Message),
            CredentialFailure.Missing => (401, "The Authorization header with your secret key is required."),
            _ => ((int, string)?)(401, "The secret key is not valid."),
        };
        if (refusal is var (status, message)) return Envelope(CreditsUsageEnvelope.Error(status, message), status);
        // Authentication has just read the organization's committed state; the figures come from that read.
        var figures = engine.FiguresOf(caller!.Organization!);
        // Without an active subscription nothing can be spent, top-ups included (rule 4): the usage says so with
        // zeros, as check-balance answers hasCredits false, rather than show credits that every message would be refused.
        var usage = figures.Subscribed ? new CreditsUsage(figures.Total, figures.Used, figures.Remaining) : new CreditsUsage(0, 0, 0);
        return Envelope(new CreditsUsageEnvelope(usage, "1.0.0", true, 200, ""), 200);
    }

    public static async Task<Results<JsonBody<AgentBalance>, JsonBody<AgentNoSubscription>, JsonBody<AgentError>>> CheckBalance(
        HttpContext context, Credentials credentials, LedgerEngine engine)
    {
        var (caller, failure) = await credentials.AuthenticateOrganizationAsync(context, KeyScopes.BalanceRead, OrganizationRead.State);
        switch (failure)
        {
            case CredentialFailure.None: break;
            case CredentialFailure.OrganizationUnavailable: return new JsonBody<AgentError>(AgentError.Of(AgentsNotFound), CompatibilityJson.Default.AgentError, 404);
            case CredentialFailure.MissingScope:
                return new JsonBody<AgentError>(AgentError.Of("This key lacks the balance:read scope"), CompatibilityJson.Default.AgentError, 403);
            default: return new JsonBody<AgentError>(AgentError.Of(AgentsUnauthorized), CompatibilityJson.Default.AgentError, 401);
        }
        var figures = engine.FiguresOf(caller!.Organization!);
        if (!figures.Subscribed)
        {
            return new JsonBody<AgentNoSubscription>(new AgentNoSubscription(false, false, false, AgentsNoSubscription), CompatibilityJson.Default.AgentNoSubscription);
        }
        return new JsonBody<AgentBalance>(new AgentBalance(true, caller.OrganizationId, figures.Unlimited || figures.Remaining > 0, figures.HasAssistant),
            CompatibilityJson.Default.AgentBalance);
    }

    private static JsonBody<CreditsUsageEnvelope> Envelope(CreditsUsageEnvelope envelope, int status) =>
        new(envelope, CompatibilityJson.Default.CreditsUsageEnvelope, status);
}

[JsonSerializable(typeof(CreditsUsageEnvelope))]
[JsonSerializable(typeof(AgentBalance))]
[JsonSerializable(typeof(AgentNoSubscription))]
[JsonSerializable(typeof(AgentError))]
public sealed partial class CompatibilityJson : JsonSerializerContext;
