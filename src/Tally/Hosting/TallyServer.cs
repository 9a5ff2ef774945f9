using System.Text.Json.Serialization;
using Microsoft.AspNetCore.OpenApi;
using Tally.Admin;
using Tally.Auth;
using Tally.Balances;
using Tally.Compatibility;
using Tally.Consumptions;
using Tally.Dashboard;
using Tally.Holds;
using Tally.Http;
using Tally.Ledger.Engine;
using Tally.Ledger.Stores;
using Tally.Ledger.Stores.Postgres;
using Tally.Ledger.Stores.Sqlite;
using Tally.Operations;

namespace Tally.Hosting;

/// <summary>Builds the `tally serve` application; tests build the same application on a free port.</summary>
public sealed class TallyServer
{
    public static WebApplication Build(TallyOptions options, Action<WebApplicationBuilder>? configure = null)
    {
        // Tally's settings are read once at start (TallyOptions: command line, environment, appsettings.json) and
        // never reloaded, so the host's configuration is not reloaded on change either: its file watcher watched the
        // working directory and everything under it, and woke for every write SQLite made when the data folder was
        // there (9% of the server's CPU under load, bench/RESULTS.md).
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        builder.WebHost.UseUrls(options.Urls);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = ErrorEnvelopes.RequestBodyBytesMax;
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddJsonConsole(json => json.IncludeScopes = true);
        builder.Logging.SetMinimumLevel(options.LogLevel);
        builder.Logging.AddFilter("Microsoft.AspNetCore", options.LogLevel > LogLevel.Warning ? options.LogLevel : LogLevel.Warning);
        // This category only logs each request's start and end (Information, filtered out above), but while any of
        // its levels is on, hosting creates a tracing Activity for every request; off, a request costs less.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        // The host logs a start that failed ("Hosting failed to start", with the stack trace) before it throws; `tally
        // serve` then says in one line why (an address in use, a store it cannot open), or the runtime prints an
        // unexpected exception in full, so the record only buried that line. A background service that fails still
        // logs the Critical record that stops the host.
        builder.Logging.AddFilter("Microsoft.Extensions.Hosting.Internal.Host", LogLevel.Critical);
        builder.Services.ConfigureHttpJsonOptions(json =>
        {
            // The web defaults read numbers from strings too, which the OpenAPI document then declared as
            // ["integer","string"]; Tally writes numbers only and its bodies refuse a number in a string.
            json.SerializerOptions.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
            json.SerializerOptions.TypeInfoResolverChain.Insert(0, TallyJson.Default);
            json.SerializerOptions.TypeInfoResolverChain.Insert(0, CompatibilityJson.Default);
        });
        // The OpenAPI title defaults to the entry assembly's name, which differs between `tally serve` and a test host.
        builder.Services.Configure<OpenApiOptions>("v1", openApi => openApi.AddDocumentTransformer((document, _, _) =>
        {
            document.Info.Title = "Tally";
            // HEAD is answered wherever GET is (AnswerHeadWhereGetIs); it is no operation of its own to describe.
            foreach (var path in document.Paths.Values) path.Operations?.Remove(HttpMethod.Head);
            BodyDocumentation.AddKeySchemes(document);
            return Task.CompletedTask;
        }));
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ILedgerStore>(_ => CreateStore(options));
        builder.Services.AddSingleton(services => new LedgerEngine(services.GetRequiredService<ILedgerStore>(), services.GetRequiredService<TimeProvider>()));
        builder.Services.AddSingleton<OperatorKey>();
        builder.Services.AddSingleton<Credentials>();
        builder.Services.AddHostedService<LedgerHost>();
        builder.Services.AddHostedService<RenewalSweep>();
        builder.Services.AddSingleton<Operations.TallyMetrics>();
        builder.Services.AddSingleton<Operations.PrometheusExporter>();
        builder.Services.AddSingleton<Operations.ReadinessQuery>();
        builder.Services.AddSingleton<CredentialRateLimiter>();
        builder.Services.AddOpenApi();
        configure?.Invoke(builder);

        var app = builder.Build();
        // Created at start so that every measurement from the first request on is collected.
        app.Services.GetRequiredService<Operations.PrometheusExporter>();
        app.Services.GetRequiredService<Operations.TallyMetrics>();
        app.UseRequestHandling();
        // Every endpoint, in one group whose convention answers HEAD wherever GET is (RFC 9110 requires both of a
        // server): routing then matches HEAD itself and lists it in a 405's Allow, and no request pays a middleware
        // for it. Kestrel sends a HEAD request's headers without the body the endpoint writes.
        var endpoints = app.MapGroup("");
        ((IEndpointConventionBuilder)endpoints).Add(AnswerHeadWhereGetIs);
        endpoints.MapOperations();
        endpoints.MapCompatibility();
        endpoints.MapOrganizationApi();
        endpoints.MapAdmin();
        endpoints.MapDashboard();
        // Only the v1 document exists: another name is answered like any unknown path (404 in the problem
        // envelope), not with the OpenAPI package's own plain-text 404.
        endpoints.MapOpenApi().AddEndpointFilter((context, next) =>
            context.HttpContext.GetRouteValue("documentName") is string name && !name.Equals("v1", StringComparison.OrdinalIgnoreCase)
                ? ValueTask.FromResult<object?>(Http.Problems.NotFound("No such OpenAPI document; it is /openapi/v1.json."))
                : next(context));
        // The Swagger UI middleware matches every request's path with a regular expression; only /docs needs it.
        app.UseWhen(context => context.Request.Path.StartsWithSegments("/docs"), docs =>
        {
            // The Swagger UI middleware serves its page to GET only; it is no endpoint, so the convention above does
            // not reach it.
            docs.Use((context, next) =>
            {
                if (HttpMethods.IsHead(context.Request.Method)) context.Request.Method = HttpMethods.Get;
                return next(context);
            });
            docs.UseSwaggerUI(ui =>
            {
                ui.RoutePrefix = "docs";
                ui.SwaggerEndpoint("/openapi/v1.json", "Tally");
                ui.DocumentTitle = "Tally API reference";
            });
        });
        return app;
    }

    private static void AnswerHeadWhereGetIs(EndpointBuilder endpoint)
    {
        if (endpoint.Metadata.OfType<HttpMethodMetadata>().LastOrDefault() is { } methods
            && methods.HttpMethods.Contains(HttpMethods.Get) && !methods.HttpMethods.Contains(HttpMethods.Head))
        {
            endpoint.Metadata.Add(new HttpMethodMetadata([.. methods.HttpMethods, HttpMethods.Head], methods.AcceptCorsPreflight));
        }
    }

    public static ILedgerStore CreateStore(TallyOptions options) => options.Store switch
    {
        StoreKind.Sqlite => new SqliteLedgerStore(options.DataDirectory),
        StoreKind.Postgres => new PostgresLedgerStore(options.Connection is { Length: > 0 } connection ? connection
            : throw new ArgumentException("--store postgres needs a connection string: --connection \"Host=…;Database=…;Username=…\" or TALLY_CONNECTION.")),
        _ => throw new ArgumentOutOfRangeException(nameof(options), options.Store, "Unknown store."),
    };
}

public static class OrganizationApi
{
    /// <summary>The native API of SPEC §3.3, behind the organization key.</summary>
    public static IEndpointRouteBuilder MapOrganizationApi(this IEndpointRouteBuilder routes)
    {
        // Any of them: a bad or revoked key, a key without the scope, an organization deleted or disabled, the rate
        // limit, the store or the writer's queue unavailable.
        var organization = routes.MapGroup("/v1").WithTags("Organization").AddEndpointFilter<OrganizationKeyFilter>()
            .WithProblems(StatusCodes.Status401Unauthorized, StatusCodes.Status403Forbidden, StatusCodes.Status404NotFound,
                StatusCodes.Status429TooManyRequests, StatusCodes.Status503ServiceUnavailable)
            .RequiresKey(BodyDocumentation.OrganizationKeyScheme);
        organization.MapBalances();
        organization.MapConsumptions();
        organization.MapHolds();
        return routes;
    }
}

[JsonSourceGenerationOptions(System.Text.Json.JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(BalanceView))]
[JsonSerializable(typeof(ConsumptionReceipt))]
[JsonSerializable(typeof(RefundReceipt))]
[JsonSerializable(typeof(HoldReceipt))]
[JsonSerializable(typeof(CaptureReceipt))]
[JsonSerializable(typeof(ReleaseReceipt))]
[JsonSerializable(typeof(GrantView))]
[JsonSerializable(typeof(OrganizationView))]
[JsonSerializable(typeof(SubscriptionView))]
[JsonSerializable(typeof(AssistantView))]
[JsonSerializable(typeof(IReadOnlyList<AssistantView>))]
[JsonSerializable(typeof(ApiKeyView))]
[JsonSerializable(typeof(IReadOnlyList<ApiKeyView>))]
[JsonSerializable(typeof(ApiKeyCreated))]
[JsonSerializable(typeof(Page<LedgerEntryView>))]
[JsonSerializable(typeof(Page<OrganizationSummary>))]
[JsonSerializable(typeof(UsageReport))]
[JsonSerializable(typeof(VerifyReport))]
[JsonSerializable(typeof(Page<AuditEntryView>))]
[JsonSerializable(typeof(Operations.Health))]
[JsonSerializable(typeof(ProblemDocument))]
public sealed partial class TallyJson : JsonSerializerContext;
