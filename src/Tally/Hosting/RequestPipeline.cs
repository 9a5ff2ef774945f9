using Tally.Operations;

namespace Tally.Hosting;

public static class RequestPipeline
{
    /// <summary>The response header carrying the request's id, which every log line of the request has in its scope.</summary>
    public const string RequestIdHeader = "X-Request-Id";

    /// <summary>Rate limits every request but the probes and scrapes by its credential (<see cref="CredentialRateLimiter"/>).</summary>
    public static IApplicationBuilder UseCredentialRateLimiting(this IApplicationBuilder app)
    {
        var limiter = app.ApplicationServices.GetRequiredService<CredentialRateLimiter>();
        return app.Use((context, next) => limiter.InvokeAsync(context, next));
    }

    /// <summary>
    /// Gives every request an id (returned as X-Request-Id; the error log line of a failed request names it) and
    /// counts it by route and status. No log scope is opened per request: the scope's async-local state cost
    /// every request of the hottest endpoints, and only a failed request writes a log line.
    /// </summary>
    public static IApplicationBuilder UseRequestObservation(this IApplicationBuilder app)
    {
        var metrics = app.ApplicationServices.GetRequiredService<TallyMetrics>();
        app.Use(async (context, next) =>
        {
            context.Response.Headers[RequestIdHeader] = context.TraceIdentifier;
            try
            {
                await next(context);
            }
            finally
            {
                var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
                metrics.Request(route, context.Response.StatusCode);
            }
        });
        return app;
    }
}
