namespace Tally.Http;

public static class BodyDocumentation
{
    /// <summary>
    /// Names the JSON body an endpoint reads, for the API reference. Unlike `Accepts`, it does not make
    /// routing refuse other content types: the seeds' clients send `{}` as a form, and Tally reads any body as JSON.
    /// </summary>
    public static RouteHandlerBuilder WithBody<T>(this RouteHandlerBuilder builder) =>
        builder.WithDescription($"Body: a JSON object of {typeof(T).Name} ({string.Join(", ", typeof(T).GetProperties().Select(property => char.ToLowerInvariant(property.Name[0]) + property.Name[1..]))}).")
            .WithProblems(StatusCodes.Status400BadRequest, StatusCodes.Status413PayloadTooLarge);

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
