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

    /// <summary>The message of a 413, whether the declared length or the body read was too long.</summary>
    public static readonly string BodyTooLarge = $"The request body is larger than {RequestBodyBytesMax} bytes.";

    public static IResult For(HttpContext context, int status, string message)
    {
        var path = context.Request.Path;
        if (path.StartsWithSegments("/chat"))
        {
            return new JsonBody<CreditsUsageEnvelope>(CreditsUsageEnvelope.Error(status, message), CompatibilityJson.Default.CreditsUsageEnvelope, status);
        }
        if (path.StartsWithSegments("/api/v1/agents"))
        {
            var text = status switch
            {
                401 => CompatibilityApi.AgentsUnauthorized,
                404 => CompatibilityApi.AgentsNotFound,
                // The seed pairs this text with a 500; a 503 (the store did not answer) says what it is and when to retry.
                500 => CompatibilityApi.InternalError,
                _ => message,
            };
            return new JsonBody<AgentError>(AgentError.Of(text), CompatibilityJson.Default.AgentError, status);
        }
        return status switch
        {
            413 => Problems.PayloadTooLarge(RequestBodyBytesMax),
            429 => Problems.RateLimited(1),
            404 => Problems.NotFound(message),
            405 => Problems.Of(405, "method_not_allowed", "Method not allowed", message),
            503 => Problems.Unavailable(message),
            408 => Problems.Of(408, "request_timeout", "Request timeout", message),
            >= 500 => Problems.Internal(),
            _ => Problems.Of(status, "bad_request", "Bad request", message),
        };
    }

    /// <summary>
    /// Drops whatever the failed handler set, but not the request id: an error's answer is where the client most
    /// needs the id that finds its log lines.
    /// </summary>
    public static void ClearKeepingRequestId(HttpContext context)
    {
        context.Response.Clear();
        context.Response.Headers[RequestPipeline.RequestIdHeader] = context.TraceIdentifier;
    }

    /// <summary>
    /// Whether the response has an error status and nothing else yet (an unknown route, a wrong method, a parameter
    /// that did not bind): the cases ASP.NET Core's status code pages answer.
    /// </summary>
    public static bool NeedsBody(HttpResponse response) =>
        !response.HasStarted && response.StatusCode is >= 400 and < 600
        && response.ContentLength is null && string.IsNullOrEmpty(response.ContentType);

    /// <summary>The body such a response gets, in the envelope of the API its path belongs to.</summary>
    public static IResult ForStatus(HttpContext context)
    {
        var message = context.Response.StatusCode switch
        {
            404 => $"No endpoint at {context.Request.Method} {context.Request.Path}; see /docs.",
            405 => $"{context.Request.Method} is not allowed on {context.Request.Path}; see /docs.",
            _ => "The request could not be processed.",
        };
        return For(context, context.Response.StatusCode, message);
    }
}
