namespace Tally.Http;

public static class BodyDocumentation
{
    /// <summary>
    /// Names the JSON body an endpoint reads, for the API reference. Unlike `Accepts`, it does not make
    /// routing refuse other content types: the seeds' clients send `{}` as a form, and Tally reads any body as JSON.
    /// </summary>
    public static RouteHandlerBuilder WithBody<T>(this RouteHandlerBuilder builder) =>
        builder.WithDescription($"Body: a JSON object of {typeof(T).Name} ({string.Join(", ", typeof(T).GetProperties().Select(property => char.ToLowerInvariant(property.Name[0]) + property.Name[1..]))}).");
}
