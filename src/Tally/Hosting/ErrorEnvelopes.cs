using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Compatibility;
using Tally.Http;

namespace Tally.Hosting;

/// <summary>
/// Errors raised outside a handler (oversized or unreadable bodies, unknown routes, wrong methods, bugs)
/// are answered in the envelope of the API the path belongs to, never as an empty body or a stack trace.
/// </summary>
public static class ErrorEnvelopes
{
    /// <summary>SPEC §3: request bodies up to 64 KiB.</summary>
    public const long RequestBodyBytesMax = 64 * 1024;

    public static IResult For(HttpContext context, int status, string message)
    {
        var path = context.Request.Path;
        if (path.StartsWithSegments("/chat"))
        {
            return TypedResults.Json(CreditsUsageEnvelope.Error(status, message), CompatibilityJson.Default.CreditsUsageEnvelope, statusCode: status);
        }
        if (path.StartsWithSegments("/api/v1/agents"))
        {
            var text = status switch
            {
                401 => CompatibilityApi.AgentsUnauthorized,
                404 => CompatibilityApi.AgentsNotFound,
                >= 500 => CompatibilityApi.InternalError,
                _ => message,
            };
            return TypedResults.Json(AgentError.Of(text), CompatibilityJson.Default.AgentError, statusCode: status);
        }
        return status switch
        {
            413 => Problems.PayloadTooLarge(RequestBodyBytesMax),
            429 => Problems.RateLimited(1),
            404 => Problems.NotFound(message),
            405 => Problems.Of(405, "method_not_allowed", "Method not allowed", message),
            >= 500 => Problems.Internal(),
            _ => Problems.Of(status, "bad_request", "Bad request", message),
        };
    }

    /// <summary>
    /// Drops whatever the failed handler set, but not the request id: an error's answer is where the client most
    /// needs the id that finds its log lines.
    /// </summary>
    private static void ClearKeepingRequestId(HttpContext context)
    {
        context.Response.Clear();
        context.Response.Headers[RequestPipeline.RequestIdHeader] = context.TraceIdentifier;
    }

    public static IApplicationBuilder UseErrorEnvelopes(this IApplicationBuilder app)
    {
        app.Use(async (context, next) =>
        {
            if (context.Request.ContentLength > RequestBodyBytesMax)
            {
                await For(context, 413, $"The request body is larger than {RequestBodyBytesMax} bytes.").ExecuteAsync(context);
                return;
            }
            try
            {
                await next(context);
            }
            catch (BadHttpRequestException exception) when (!context.Response.HasStarted)
            {
                var message = exception.StatusCode == 413 ? $"The request body is larger than {RequestBodyBytesMax} bytes." : "The request could not be read.";
                ClearKeepingRequestId(context);
                await For(context, exception.StatusCode, message).ExecuteAsync(context);
            }
            catch (Exception exception) when (!context.Response.HasStarted && exception is not OperationCanceledException)
            {
                context.RequestServices.GetRequiredService<ILogger<TallyServer>>().LogError(exception, "Unhandled error on {Path} (request {RequestId})",
                    context.Request.Path.Value, context.TraceIdentifier);
                ClearKeepingRequestId(context);
                await For(context, 500, "Internal server error").ExecuteAsync(context);
            }
        });
        app.UseStatusCodePages(async statusContext =>
        {
            var context = statusContext.HttpContext;
            var message = context.Response.StatusCode switch
            {
                404 => $"No endpoint at {context.Request.Method} {context.Request.Path}; see /docs.",
                405 => $"{context.Request.Method} is not allowed on {context.Request.Path}; see /docs.",
                _ => "The request could not be processed.",
            };
            await For(context, context.Response.StatusCode, message).ExecuteAsync(context);
        });
        return app;
    }
}
