using System.Net;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Tally.Tests.Infrastructure;

namespace Tally.Tests;

/// <summary>SPEC §3.6: health, readiness, the OpenAPI document (kept in docs/openapi.json) and the browsable reference.</summary>
public sealed class OperationsTests(TallyServerFixture server) : IClassFixture<TallyServerFixture>
{
    /// <summary>Set to 1 to rewrite docs/openapi.json from the running server instead of comparing with it.</summary>
    public const string UpdateVariable = "TALLY_UPDATE_OPENAPI";

    /// <summary>The server URL in the committed document: the default of `tally serve`, since tests bind a random port.</summary>
    private const string DocumentedServer = "http://127.0.0.1:5080/";

    [Fact]
    public async Task HealthzAndReadyzAnswer200()
    {
        var alive = (await server.CallAsync(HttpMethod.Get, "/healthz", null)).Expect(HttpStatusCode.OK);
        var ready = (await server.CallAsync(HttpMethod.Get, "/readyz", null)).Expect(HttpStatusCode.OK);

        Assert.Equal("{\"status\":\"alive\"}", alive.Text);
        Assert.Equal("{\"status\":\"ready\"}", ready.Text);
    }

    [Theory]
    [InlineData("/healthz", null)]
    [InlineData("/v1/balance", "key")]
    [InlineData("/", null)]
    public async Task HeadAnswersWithTheHeadersOfGetAndNoBody(string path, string? authorization)
    {
        var organization = await server.CreateOrganizationAsync();
        var bearer = authorization is null ? null : organization.Key.Bearer;
        using var get = await server.SendAsync(HttpMethod.Get, path, bearer);
        using var head = await server.SendAsync(HttpMethod.Head, path, bearer);

        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(get.Content.Headers.ContentType, head.Content.Headers.ContentType);
        Assert.NotEmpty(await get.Content.ReadAsByteArrayAsync());
        Assert.Empty(await head.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task AMethodNotAllowedListsHeadWhereverGetIsAllowed()
    {
        using var delete = await server.SendAsync(HttpMethod.Delete, "/healthz", null);
        using var head = await server.SendAsync(HttpMethod.Head, "/v1/consumptions", null);

        Assert.Equal(HttpStatusCode.MethodNotAllowed, delete.StatusCode);
        Assert.Equal(["GET", "HEAD"], delete.Content.Headers.Allow);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, head.StatusCode);
        Assert.Equal(["POST"], head.Content.Headers.Allow);
    }

    [Fact]
    public void NoConfigurationFileIsWatchedForChanges()
    {
        // A reloading file source watches the working directory and everything below it, so every SQLite write in
        // a data folder there would wake the watcher (bench/RESULTS.md measured 9% of the server's CPU).
        var configuration = (IConfigurationRoot)server.Services.GetRequiredService<IConfiguration>();
        var fileSources = configuration.Providers.OfType<FileConfigurationProvider>().Select(provider => provider.Source).ToList();

        Assert.NotEmpty(fileSources);
        Assert.All(fileSources, source => Assert.False(source.ReloadOnChange, $"{source.Path} is reloaded on change"));
    }

    [Fact]
    public async Task TheApiReferenceIsServedAsHtmlAndReadsTheOpenApiDocument()
    {
        var page = (await server.CallAsync(HttpMethod.Get, "/docs/index.html", null)).Expect(HttpStatusCode.OK);
        var script = (await server.CallAsync(HttpMethod.Get, "/docs/index.js", null)).Expect(HttpStatusCode.OK);

        Assert.Equal("text/html", page.ContentType);
        Assert.Contains("<title>Tally API reference</title>", page.Text);
        Assert.Contains("swagger-ui", page.Text);
        Assert.Contains("/openapi/v1.json", script.Text);
    }

    [Fact]
    public async Task TheOpenApiDocumentDescribesEveryEndpointOfTheSpec()
    {
        var document = await FetchDocumentAsync();
        var operations = document["paths"]!.AsObject()
            .SelectMany(path => path.Value!.AsObject().Select(operation => $"{operation.Key.ToUpperInvariant()} {path.Key}"))
            .ToHashSet();

        string[] expected =
        [
            "GET /healthz", "GET /readyz", "GET /chat/Chatbot/GetMessageCreditsUsage", "POST /chat/Chatbot/GetMessageCreditsUsage",
            "GET /api/v1/agents/check-balance", "GET /v1/balance", "POST /v1/consumptions", "POST /v1/consumptions/{id}/refunds",
            "POST /v1/holds", "POST /v1/holds/{id}/capture", "POST /v1/holds/{id}/release", "GET /v1/usage", "GET /v1/ledger",
            "POST /v1/admin/organizations", "GET /v1/admin/organizations", "GET /v1/admin/organizations/{id}",
            "PATCH /v1/admin/organizations/{id}", "DELETE /v1/admin/organizations/{id}", "POST /v1/admin/organizations/{id}/keys",
            "GET /v1/admin/organizations/{id}/keys", "DELETE /v1/admin/organizations/{id}/keys/{keyId}",
            "PUT /v1/admin/organizations/{id}/subscription", "DELETE /v1/admin/organizations/{id}/subscription",
            "POST /v1/admin/organizations/{id}/grants", "POST /v1/admin/organizations/{id}/assistants",
            "GET /v1/admin/organizations/{id}/assistants", "GET /v1/admin/organizations/{id}/assistants/{assistantId}",
            "DELETE /v1/admin/organizations/{id}/assistants/{assistantId}",
            "GET /v1/admin/organizations/{id}/balance", "GET /v1/admin/organizations/{id}/usage", "GET /v1/admin/organizations/{id}/ledger",
            "GET /v1/admin/verify",
        ];
        Assert.Empty(expected.Except(operations));
        Assert.Equal("Tally", document["info"]!["title"]!.GetValue<string>());
    }

    [Fact]
    public async Task TheOpenApiDocumentDescribesEachBodyAndTheCredentialEachOperationNeedsSoTheReferenceCanTryThem()
    {
        var document = await FetchDocumentAsync();
        var schemes = document["components"]!["securitySchemes"]!;
        Assert.Equal("bearer", schemes["organizationKey"]!["scheme"]!.GetValue<string>());
        Assert.Equal("bearer", schemes["operatorKey"]!["scheme"]!.GetValue<string>());
        string Scheme(string path, string method) =>
            Assert.Single(document["paths"]![path]![method]!["security"]!.AsArray())!.AsObject().Single().Key;
        Assert.Equal("organizationKey", Scheme("/v1/consumptions", "post"));
        Assert.Equal("organizationKey", Scheme("/api/v1/agents/check-balance", "get"));
        Assert.Equal("operatorKey", Scheme("/v1/admin/organizations", "post"));
        Assert.Null(document["paths"]!["/healthz"]!["get"]!["security"]);

        var consume = document["paths"]!["/v1/consumptions"]!["post"]!["requestBody"]!["content"]!["application/json"]!["schema"]!;
        Assert.Equal("integer", consume["properties"]!["credits"]!["type"]!.AsArray().Last()!.GetValue<string>());
        Assert.Null(consume["required"]);
        var subscription = document["paths"]!["/v1/admin/organizations/{id}/subscription"]!["put"]!["requestBody"]!["content"]!["application/json"]!["schema"]!;
        Assert.Equal(["plan", "creditsPerPeriod", "period"], subscription["required"]!.AsArray().Select(name => name!.GetValue<string>()));
    }

    [Fact]
    public async Task AProblemsTypeLinksToTheErrorReferenceThatThisServerServes()
    {
        var organization = await server.CreateOrganizationAsync(creditsPerPeriod: 1);
        var refusal = (await server.ConsumeAsync(organization.Key, credits: 2)).ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        var type = new Uri(server.BaseAddress, refusal.String("type"));
        Assert.Equal("insufficient_credits", type.Fragment.TrimStart('#'));

        using var reference = await server.SendAsync(HttpMethod.Get, type.PathAndQuery, authorization: null);
        Assert.Equal(HttpStatusCode.OK, reference.StatusCode);
        Assert.Equal("text/markdown", reference.Content.Headers.ContentType?.MediaType);
        var text = await reference.Content.ReadAsStringAsync();
        Assert.Equal(await File.ReadAllTextAsync(Path.Combine(RepositoryRoot(), "docs", "errors.md")), text);
        Assert.Contains("| `insufficient_credits` | 402 |", text);
    }

    [Fact]
    public async Task TheServedOpenApiDocumentMatchesTheCommittedDocsOpenApiJson()
    {
        var served = await FetchDocumentAsync();
        var path = Path.Combine(RepositoryRoot(), "docs", "openapi.json");
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            await File.WriteAllTextAsync(path, Format(served) + "\n");
        }

        Assert.True(File.Exists(path), $"{path} is missing; run `{UpdateVariable}=1 dotnet test tests/Tally.Tests --filter OperationsTests` to write it.");
        var committed = JsonNode.Parse(await File.ReadAllTextAsync(path))!;
        var difference = FirstDifference(committed, served, "$");
        Assert.True(difference is null,
            $"docs/openapi.json differs from what the server serves at {difference}. If the API change is intended, run " +
            $"`{UpdateVariable}=1 dotnet test tests/Tally.Tests --filter OperationsTests` and commit docs/openapi.json.");
    }

    private async Task<JsonNode> FetchDocumentAsync()
    {
        var reply = (await server.CallAsync(HttpMethod.Get, "/openapi/v1.json", null)).Expect(HttpStatusCode.OK);
        Assert.Equal("application/json", reply.ContentType);
        var document = reply.Json!;
        // The only part that depends on the run: the server's URL, which has the random port.
        document["servers"] = new JsonArray(new JsonObject { ["url"] = DocumentedServer });
        return document;
    }

    private static string Format(JsonNode document) =>
        document.ToJsonString(new JsonSerializerOptions { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    /// <summary>The JSON path of the first difference, or null when the documents are equal.</summary>
    private static string? FirstDifference(JsonNode? expected, JsonNode? actual, string path)
    {
        switch (expected, actual)
        {
            case (JsonObject left, JsonObject right):
                foreach (var name in left.Select(pair => pair.Key).Union(right.Select(pair => pair.Key)))
                {
                    if (!left.ContainsKey(name)) return $"{path}.{name} (only served)";
                    if (!right.ContainsKey(name)) return $"{path}.{name} (only committed)";
                    if (FirstDifference(left[name], right[name], $"{path}.{name}") is { } found) return found;
                }
                return null;
            case (JsonArray left, JsonArray right):
                if (left.Count != right.Count) return $"{path} ({left.Count} committed items, {right.Count} served)";
                for (var index = 0; index < left.Count; index++)
                {
                    if (FirstDifference(left[index], right[index], $"{path}[{index}]") is { } found) return found;
                }
                return null;
            default:
                return JsonNode.DeepEquals(expected, actual) ? null : $"{path} (committed {expected?.ToJsonString()}, served {actual?.ToJsonString()})";
        }
    }

    private static string RepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "Tally.slnx"))) return directory.FullName;
        }
        throw new InvalidOperationException("Tally.slnx was not found above " + AppContext.BaseDirectory);
    }
}
