using Microsoft.OpenApi;

namespace Tally.Http;

public static class BodyDocumentation
{
    /// <summary>
    /// Describes the JSON body an endpoint reads, for the API reference (whose "Try it out" then offers it). Unlike
    /// `Accepts`, it does not make routing refuse other content types: the seeds' clients send `{}` as a form, and
    /// Tally reads any body as JSON, by hand (BodyReader), so the handler names no body parameter to infer it from.
    /// </summary>
    public static RouteHandlerBuilder WithBody<T>(this RouteHandlerBuilder builder) =>
        builder.AddOpenApiOperationTransformer(async (operation, context, cancellationToken) =>
            {
                var schema = await context.GetOrCreateSchemaAsync(typeof(T), null, cancellationToken);
                operation.RequestBody = new OpenApiRequestBody
                {
                    // An empty body reads as {} (docs/api.md), and an idempotency key may come in the header instead.
                    Required = false,
                    Content = new Dictionary<string, OpenApiMediaType> { ["application/json"] = new() { Schema = schema } },
                };
            })
            .WithProblems(StatusCodes.Status400BadRequest, StatusCodes.Status413PayloadTooLarge);

    /// <summary>The API reference's names of the two credentials (SPEC §3.1), each an HTTP bearer scheme.</summary>
    public const string OrganizationKeyScheme = "organizationKey", OperatorKeyScheme = "operatorKey";

    /// <summary>
    /// Adds the two credentials to the API reference, so that its "Authorize" button can send them: an organization's
    /// key (`pk_…:sk_…` or `sk_…`, sent as `Bearer …`, which the compatibility endpoints accept too) and the operator key.
    /// </summary>
    public static void AddKeySchemes(OpenApiDocument document)
    {
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[OrganizationKeyScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http, Scheme = "bearer", Description = "An organization's key: `pk_…:sk_…`, or its secret `sk_…` alone.",
        };
        document.Components.SecuritySchemes[OperatorKeyScheme] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http, Scheme = "bearer", Description = "The operator key, for the admin API.",
        };
    }

    /// <summary>Marks the operations of an endpoint or a group as needing one of <see cref="AddKeySchemes"/>'s credentials.</summary>
    public static TBuilder RequiresKey<TBuilder>(this TBuilder builder, string scheme) where TBuilder : IEndpointConventionBuilder =>
        builder.AddOpenApiOperationTransformer((operation, context, _) =>
        {
            operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(scheme, context.Document)] = [] }];
            return Task.CompletedTask;
        });

    /// <summary>
    /// Lists the problem answers (application/problem+json) an endpoint or a group may give, for the API reference:
    /// the typed results name the successes, but a ProblemHttpResult carries no status of its own. docs/errors.md says
    /// which codes each status has.
    /// </summary>
    public static TBuilder WithProblems<TBuilder>(this TBuilder builder, params int[] statuses) where TBuilder : IEndpointConventionBuilder
    {
        foreach (var status in statuses) builder.WithMetadata(new ProducesResponseTypeMetadata(status, typeof(ProblemDocument), ["application/problem+json"]));
        return builder;
    }
}

/// <summary>
/// The shape of every problem answer of the native and admin APIs, for the API reference only (Problems.Of writes
/// them): RFC 9457's fields, the stable <c>code</c> of docs/errors.md, and for validation_failed the field errors.
/// </summary>
public sealed record ProblemDocument(string Type, string Title, int Status, string Detail, string Code)
{
    /// <summary>For validation_failed only: each field's messages.</summary>
    public IReadOnlyDictionary<string, string[]>? Errors { get; init; }
}
