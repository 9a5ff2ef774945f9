using System.Text.Json.Serialization;

// The HTTP ceiling anchor of PERFORMANCE.md: a minimal API returning a three-field JSON object, on the
// same builder, Kestrel settings and JSON source generation as tally, so the ratio measures Tally's own work.
// Like tally's, its configuration is not reloaded on change (no file watcher on the working directory).
var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false", .. args] });
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.Limits.MaxRequestBodySize = 64 * 1024;
});
builder.Logging.ClearProviders();
builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.TypeInfoResolverChain.Insert(0, HelloJson.Default));
var app = builder.Build();
app.MapGet("/hello", () => TypedResults.Ok(new Hello(true, "org-00000000-0000-0000-0000-000000000000", true)));
app.Run();

public sealed record Hello(bool Success, string OrganizationId, bool HasCredits);

[JsonSerializable(typeof(Hello))]
internal sealed partial class HelloJson : JsonSerializerContext;
