using System.Reflection;

namespace Tally.Dashboard;

/// <summary>
/// The dashboard at `/` (SPEC §3.6): one page where a customer reads the balance, usage and ledger of their
/// organization with its secret key, and an operator sees whether the service is alive and ready. The page, its
/// script and its style are files embedded in the assembly (so `dotnet run`, a publish and the tests serve the same
/// bytes), read once at start. The page calls the public API from the browser, so it can show nothing that the
/// key itself cannot read; it keeps the key in the tab's session storage only.
/// </summary>
public static class DashboardApi
{
    /// <summary>
    /// Scripts, styles and requests from this server only, and no framing: the page shows a key's data, so no other
    /// site's script may run in it, and no other site may frame it to trick a click.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    private static readonly (string Path, string ResourceName, string ContentType)[] Files =
    [
        ("/", "index.html", "text/html; charset=utf-8"),
        ("/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"),
        ("/dashboard.css", "dashboard.css", "text/css; charset=utf-8"),
        // Named by the page, so that a browser does not ask for /favicon.ico, which would be a 404.
        ("/favicon.svg", "favicon.svg", "image/svg+xml"),
        // The error codes' reference (docs/errors.md), which every problem answer's `type` names: served by the server
        // itself, so that the link works wherever Tally runs, offline and at the build's own version.
        ("/errors", "errors.md", "text/markdown; charset=utf-8"),
    ];

    public static IEndpointRouteBuilder MapDashboard(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("").WithTags("Dashboard").ExcludeFromDescription();
        foreach (var (path, resourceName, contentType) in Files)
        {
            var bytes = Read(resourceName);
            group.MapGet(path, (HttpContext context) =>
            {
                var headers = context.Response.Headers;
                headers.ContentSecurityPolicy = ContentSecurityPolicy;
                headers.XContentTypeOptions = "nosniff";
                headers["Referrer-Policy"] = "no-referrer";
                // The files change only with the build; a browser asks again each time rather than run an old script.
                headers.CacheControl = "no-cache";
                return TypedResults.Bytes(bytes, contentType);
            });
        }
        return routes;
    }

    private static byte[] Read(string resourceName)
    {
        var assembly = typeof(DashboardApi).Assembly;
        using var stream = assembly.GetManifestResourceStream("Tally.Dashboard." + resourceName)
            ?? throw new InvalidOperationException($"The dashboard's {resourceName} is not embedded in {assembly.GetName().Name}.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }
}
