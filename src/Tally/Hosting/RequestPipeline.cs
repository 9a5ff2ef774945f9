using System.Threading.RateLimiting;
using Tally.Operations;

namespace Tally.Hosting;

public static class RequestPipeline
{
    /// <summary>The response header carrying the request's id, which every log line of the request has in its scope.</summary>
    public const string RequestIdHeader = "X-Request-Id";

    /// <summary>Paths that are never rate limited: probes and scrapes must work when clients are throttled.</summary>
    private static readonly string[] UnlimitedPaths = ["/healthz", "/readyz", "/metrics"];

    /// <summary>
    /// One token bucket per credential (the Authorization header, or the client address without one):
    /// `RateLimitPerSecond` tokens a second, bursts up to twice that, no queueing, `429` with `Retry-After`.
    /// </summary>
    public static IServiceCollection AddKeyRateLimiting(this IServiceCollection services, TallyOptions options)
    {
        services.AddRateLimiter(limiter =>
        {
            limiter.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(context =>
            {
                if (UnlimitedPaths.Contains(context.Request.Path.Value)) return RateLimitPartition.GetNoLimiter("operations");
                var authorization = context.Request.Headers.Authorization.ToString();
                // A bucket lives until it has been idle a while, and each distinct header makes one, so its name must
                // stay small: a fixed-size hash, and no bucket of its own for a header too long to be a credential
                // (a flood of distinct 32 KiB headers would otherwise hold that much memory per request).
                var partition = authorization.Length is > 0 and <= Auth.Credentials.AuthorizationLengthMax
                    ? "key:" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(authorization)))
                    : "address:" + context.Connection.RemoteIpAddress;
                return RateLimitPartition.GetTokenBucketLimiter(partition, _ => new TokenBucketRateLimiterOptions
                {
                    TokenLimit = options.RateLimitPerSecond * 2,
                    TokensPerPeriod = options.RateLimitPerSecond,
                    ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                    QueueLimit = 0,
                    AutoReplenishment = true,
                });
            });
            limiter.OnRejected = async (rejected, _) =>
            {
                rejected.HttpContext.Response.Headers.RetryAfter = "1";
                await ErrorEnvelopes.For(rejected.HttpContext, 429, "Too many requests for this key; retry after 1 second.").ExecuteAsync(rejected.HttpContext);
            };
        });
        return services;
    }

    /// <summary>Gives every request an id (returned as X-Request-Id and put in every log line's scope) and counts it by route and status.</summary>
    public static IApplicationBuilder UseRequestObservation(this IApplicationBuilder app)
    {
        app.Use(async (context, next) =>
        {
            var logger = context.RequestServices.GetRequiredService<ILogger<TallyServer>>();
            context.Response.Headers[RequestIdHeader] = context.TraceIdentifier;
            using (logger.BeginScope(new Dictionary<string, object> { ["RequestId"] = context.TraceIdentifier }))
            {
                try
                {
                    await next(context);
                }
                finally
                {
                    var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
                    context.RequestServices.GetRequiredService<TallyMetrics>().Request(route, context.Response.StatusCode);
                }
            }
        });
        return app;
    }
}
