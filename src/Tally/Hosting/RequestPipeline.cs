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

    /// <summary>Gives every request an id (returned as X-Request-Id and put in every log line's scope) and counts it by route and status.</summary>
    public static IApplicationBuilder UseRequestObservation(this IApplicationBuilder app)
    {
        var logger = app.ApplicationServices.GetRequiredService<ILogger<TallyServer>>();
        var metrics = app.ApplicationServices.GetRequiredService<TallyMetrics>();
        app.Use(async (context, next) =>
        {
            context.Response.Headers[RequestIdHeader] = context.TraceIdentifier;
            using (logger.BeginScope(new RequestScope(context.TraceIdentifier)))
            {
                try
                {
                    await next(context);
                }
                finally
                {
                    var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
                    metrics.Request(route, context.Response.StatusCode);
                }
            }
        });
        return app;
    }

    /// <summary>
    /// The log scope of one request: a list of one name and value, which the JSON console formatter writes as a
    /// property, allocated as one small object instead of a dictionary per request.
    /// </summary>
    private sealed class RequestScope(string requestId) : IReadOnlyList<KeyValuePair<string, object?>>
    {
        public int Count => 1;
        public KeyValuePair<string, object?> this[int index] =>
            index == 0 ? new("RequestId", requestId) : throw new ArgumentOutOfRangeException(nameof(index));
        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() { yield return this[0]; }
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
        public override string ToString() => "RequestId:" + requestId;
    }
}
