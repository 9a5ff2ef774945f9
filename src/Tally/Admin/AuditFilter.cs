using Tally.Ledger.Engine;

namespace Tally.Admin;

/// <summary>
/// Records every admin action that changes something (who, what, when, on which organization, and its
/// status) after it has been answered by the handler and before the response is sent, so an answered
/// action is always audited. Reads are not recorded; refused attempts are, with the actor `anonymous`.
/// </summary>
public sealed class AuditFilter(LedgerEngine engine, Auth.Credentials credentials) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        var result = await next(context);
        if (HttpMethods.IsGet(http.Request.Method)) return result;
        var answer = result is INestedHttpResult nested ? nested.Result : result;
        var status = answer is IStatusCodeHttpResult { StatusCode: { } code } ? code : 200;
        var route = (http.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? http.Request.Path.Value ?? "";
        var organizationId = http.Request.RouteValues.TryGetValue("id", out var id) ? id as string : null;
        if (organizationId is null && answer is IValueHttpResult { Value: OrganizationView created }) organizationId = created.Id;
        var actor = credentials.IsOperator(http) ? "operator" : "anonymous";
        await engine.AuditAsync(new AuditEntry(engine.Time.GetUtcNow(), actor, $"{http.Request.Method} {route}", organizationId, status, http.TraceIdentifier));
        return result;
    }
}
