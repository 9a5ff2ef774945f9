using Tally.Operations;

namespace Tally.Hosting;

public static class RequestPipeline
{
    /// <summary>The response header carrying the request's id; the error log line of a failed request names it.</summary>
    public const string RequestIdHeader = "X-Request-Id";

    /// <summary>
    /// Everything that happens to every request before and after its endpoint, as one middleware (one async frame
    /// per request instead of four; each layer cost a few percent of a balance check): the request id, the body
    /// size limit, the rate limit by credential (<see cref="CredentialRateLimiter"/>), errors and bodiless error
    /// statuses answered in the path's envelope (<see cref="ErrorEnvelopes"/>), and the count by route and status.
    /// No log scope is opened per request: its async-local state cost every request, and only a failed request
    /// writes a log line.
    /// </summary>
    public static IApplicationBuilder UseRequestHandling(this IApplicationBuilder app)
    {
        var metrics = app.ApplicationServices.GetRequiredService<TallyMetrics>();
        var limiter = app.ApplicationServices.GetRequiredService<CredentialRateLimiter>();
        var logger = app.ApplicationServices.GetRequiredService<ILogger<TallyServer>>();
        app.Use(async (context, next) =>
        {
            context.Response.Headers[RequestIdHeader] = context.TraceIdentifier;
            try
            {
                if (context.Request.ContentLength > ErrorEnvelopes.RequestBodyBytesMax)
                {
                    // The body is left unread, so the server closes the connection after the answer: said, so that a
                    // client does not send its next request on it.
                    context.Response.Headers.Connection = "close";
                    await ErrorEnvelopes.For(context, 413, ErrorEnvelopes.BodyTooLarge).ExecuteAsync(context);
                }
                else if (!limiter.Allows(context))
                {
                    context.Response.Headers.RetryAfter = "1";
                    await ErrorEnvelopes.For(context, 429, "Too many requests for this key; retry after 1 second.").ExecuteAsync(context);
                }
                else
                {
                    await next(context);
                    if (ErrorEnvelopes.NeedsBody(context.Response)) await ErrorEnvelopes.ForStatus(context).ExecuteAsync(context);
                }
            }
            catch (BadHttpRequestException exception) when (!context.Response.HasStarted)
            {
                var message = exception.StatusCode switch
                {
                    413 => ErrorEnvelopes.BodyTooLarge,
                    408 => "The request's body did not arrive in time: send the whole body at once.",
                    // Kestrel's own words name what is wrong with the framing (a chunk's size, the length).
                    _ => $"The request could not be read: {exception.Message}",
                };
                ErrorEnvelopes.ClearKeepingRequestId(context);
                context.Response.Headers.Connection = "close";
                await ErrorEnvelopes.For(context, exception.StatusCode, message).ExecuteAsync(context);
            }
            catch (Exception exception) when (!context.Response.HasStarted && IsStoreUnavailable(exception))
            {
                // The database did not answer (PostgreSQL restarting, a connection cut, a lock that timed out): not a
                // bug, and nothing was applied, so 503 with Retry-After as a failed commit gets, and one log line.
                logger.LogWarning("The store did not answer on {Path} (request {RequestId}): {Reason}",
                    context.Request.Path.Value, context.TraceIdentifier, exception.GetBaseException().Message);
                ErrorEnvelopes.ClearKeepingRequestId(context);
                context.Response.Headers.RetryAfter = "1";
                await ErrorEnvelopes.For(context, 503, "The store did not answer; nothing was applied. Retry in a moment.").ExecuteAsync(context);
            }
            catch (Exception exception) when (!context.Response.HasStarted && exception is not OperationCanceledException)
            {
                logger.LogError(exception, "Unhandled error on {Path} (request {RequestId})", context.Request.Path.Value, context.TraceIdentifier);
                ErrorEnvelopes.ClearKeepingRequestId(context);
                await ErrorEnvelopes.For(context, 500, "Internal server error").ExecuteAsync(context);
            }
            finally
            {
                var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "unmatched";
                metrics.Request(route, context.Response.StatusCode);
            }
        });
        return app;
    }

    /// <summary>A failure the database itself calls transient (a connection refused or cut, a timeout), anywhere in the chain.</summary>
    private static bool IsStoreUnavailable(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is System.Data.Common.DbException { IsTransient: true } or TimeoutException) return true;
        }
        return false;
    }
}
