using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;

namespace Tally.Auth;

/// <summary>Marks the scope an organization endpoint needs (SPEC §3.1), and what authentication reads of its organization.</summary>
public sealed record RequiredScope(KeyScopes Scope, OrganizationRead Read = OrganizationRead.Status);

/// <summary>
/// Authenticates the organization key once for a route group and puts the caller in HttpContext.Items,
/// answering 401, 403 or 404 in the problem envelope.
/// </summary>
public sealed class OrganizationKeyFilter(Credentials credentials) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var required = http.GetEndpoint()?.Metadata.GetMetadata<RequiredScope>() ?? new RequiredScope(KeyScopes.All);
        var (caller, failure) = await credentials.AuthenticateOrganizationAsync(http, required.Scope, required.Read);
        switch (failure)
        {
            case CredentialFailure.None:
                http.Items[typeof(OrganizationCaller)] = caller;
                return await next(context);
            case CredentialFailure.MissingScope:
                return Problems.Forbidden($"This key lacks the {string.Join(", ", Names.Of(required.Scope))} scope.");
            case CredentialFailure.OrganizationUnavailable:
                return Problems.NotFound(LedgerError.OrganizationUnavailable.Message);
            case CredentialFailure.Missing:
                return Problems.Unauthorized("Send the organization's key as `Authorization: Bearer pk_…:sk_…`, `Bearer sk_…` or `sk_…`.");
            case CredentialFailure.Malformed:
                return Problems.Unauthorized("The Authorization header is not a Tally key: expected `Bearer pk_…:sk_…`, `Bearer sk_…` or `sk_…`.");
            default:
                return Problems.Unauthorized("The key is unknown or was revoked.");
        }
    }
}

public sealed class OperatorKeyFilter(Credentials credentials) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next) =>
        credentials.IsOperator(context.HttpContext)
            ? await next(context)
            : Problems.Unauthorized("The operator key is missing or wrong: the admin API needs `Authorization: Bearer <operator key>` (organization keys are not accepted here).");
}

public static class CallerExtensions
{
    public static OrganizationCaller Caller(this HttpContext context) =>
        (OrganizationCaller)(context.Items[typeof(OrganizationCaller)] ?? throw new InvalidOperationException("The endpoint is not behind OrganizationKeyFilter."));
}
