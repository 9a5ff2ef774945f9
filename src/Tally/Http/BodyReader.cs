using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Tally.Ledger.Model;

namespace Tally.Http;

/// <summary>
/// Reads a JSON request body field by field, collecting every field error so the client learns all it
/// must fix at once. Bodies are parsed as documents (depth-limited) rather than bound to types, so that
/// broken JSON and wrong types become `validation_failed` with the field named, never a 500.
/// </summary>
public sealed class BodyReader
{
    /// <summary>Nesting the API never needs; deeper documents are refused before they cost anything.</summary>
    private const int JsonDepthMax = 16;

    private readonly JsonElement root;
    private readonly Dictionary<string, string[]> errors = new(StringComparer.Ordinal);

    private BodyReader(JsonElement root) => this.root = root;

    public bool IsValid => errors.Count == 0;
    public ProblemHttpResult Problem => Problems.Validation(errors);

    /// <summary>Parses the body; an empty body reads as {}.</summary>
    public static async Task<(BodyReader? Reader, ProblemHttpResult? Problem)> ReadAsync(HttpRequest request)
    {
        JsonDocument document;
        try
        {
            using var buffer = new MemoryStream();
            await request.Body.CopyToAsync(buffer, request.HttpContext.RequestAborted);
            if (buffer.Length == 0) return (new BodyReader(JsonDocument.Parse("{}").RootElement), null);
            var bytes = buffer.ToArray();
            // RFC 8259 lets a reader ignore a byte order mark, which some clients put before the text.
            if (bytes.AsSpan().StartsWith("\uFEFF"u8)) bytes = bytes[3..];
            // JsonDocument checks a string's UTF-8 only when the string is read, which would then throw (a 500);
            // checking the whole body first makes it a field error like any other unreadable body.
            if (!System.Text.Unicode.Utf8.IsValid(bytes)) return (null, Problems.Validation("body", "The body is not valid UTF-8 text."));
            // A field named twice ({"credits":1,"credits":1000}) has no one meaning: refused, not read as the last.
            document = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = JsonDepthMax, AllowDuplicateProperties = false });
        }
        catch (JsonException exception)
        {
            return (null, Problems.Validation("body", NotJson(exception)));
        }
        catch (InvalidOperationException)
        {
            // Comparing names for duplicates decodes them, and a name escaping half a surrogate pair cannot be decoded.
            return (null, UnreadableText);
        }
        // A string value escaping half a surrogate pair ("\ud800") is valid JSON but no text: reading it later would
        // throw (a 500), so every string of the body that holds an escape is decoded once here.
        if (!IsReadableText(document.RootElement)) return (null, UnreadableText);
        if (document.RootElement.ValueKind != JsonValueKind.Object)
        {
            return (null, Problems.Validation("body", "The body must be a JSON object."));
        }
        return (new BodyReader(document.RootElement), null);
    }

    /// <summary>
    /// What is wrong with a body that is not JSON, said once and without the parser's line and position suffix
    /// (a body is one line), with where it went wrong counted in bytes.
    /// </summary>
    private static string NotJson(JsonException exception)
    {
        var reason = exception.Message;
        var suffix = reason.IndexOf(" LineNumber:", StringComparison.Ordinal);
        if (suffix > 0) reason = reason[..suffix];
        if (exception.Message.Contains("Duplicate", StringComparison.OrdinalIgnoreCase)) return $"The body names a field twice: {reason}";
        var at = (exception.LineNumber, exception.BytePositionInLine) switch
        {
            (0 or null, { } position) => $" (after {position} bytes)",
            ({ } line, { } position) => $" (on line {line + 1}, after {position} bytes of it)",
            _ => "",
        };
        return $"The body is not valid JSON{at}: {reason}";
    }

    private static ProblemHttpResult UnreadableText =>
        Problems.Validation("body", "The body holds a string that is not Unicode text: an escaped half of a surrogate pair, such as \\ud800, alone.");

    private static bool IsReadableText(JsonElement element)
    {
        try
        {
            switch (element.ValueKind)
            {
                case JsonValueKind.String:
                    if (HasUnicodeEscape(JsonMarshal.GetRawUtf8Value(element))) _ = element.GetString();
                    return true;
                case JsonValueKind.Array:
                    foreach (var item in element.EnumerateArray())
                    {
                        if (!IsReadableText(item)) return false;
                    }
                    return true;
                case JsonValueKind.Object:
                    foreach (var property in element.EnumerateObject())
                    {
                        if (HasUnicodeEscape(JsonMarshal.GetRawUtf8PropertyName(property))) _ = property.Name;
                        if (!IsReadableText(property.Value)) return false;
                    }
                    return true;
                default:
                    return true;
            }
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>
    /// Whether raw JSON text holds a \u escape, the only way to write half a surrogate pair once the body's UTF-8 is
    /// known valid: the other strings need no decoding to be known readable (and are decoded when a field is read).
    /// </summary>
    private static bool HasUnicodeEscape(ReadOnlySpan<byte> raw) => raw.IndexOf("\\u"u8) >= 0;

    public void Fail(string field, string message) => errors[field] = [message];

    public bool Has(string field) => root.TryGetProperty(field, out _);

    public bool IsNull(string field) => root.TryGetProperty(field, out var value) && value.ValueKind == JsonValueKind.Null;

    public long? Long(string field, long minimum, long maximum)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind == JsonValueKind.Number && WholeNumber(value) is { } number && number >= minimum && number <= maximum) return number;
        Fail(field, $"Must be a whole number from {minimum} to {maximum}.");
        return null;
    }

    /// <summary>
    /// A JSON number's value when it is whole, however it is written: 100, 100.0 and 1E2 are one number to JSON,
    /// so each is 100 here; 1.5 is not whole.
    /// </summary>
    private static long? WholeNumber(JsonElement value) =>
        value.TryGetInt64(out var number) ? number
        : value.TryGetDecimal(out var exact) && decimal.Truncate(exact) == exact && exact is >= long.MinValue and <= long.MaxValue ? (long)exact
        : null;

    /// <summary>Like <see cref="Long"/>, but a missing or null field is an error too.</summary>
    public long? RequiredLong(string field, long minimum, long maximum)
    {
        var number = Long(field, minimum, maximum);
        if (number is null && (!Has(field) || IsNull(field))) Fail(field, "Is required.");
        return number;
    }

    /// <summary>
    /// A text field. Control characters (NUL, escape, a line break …) are refused: names and ids are shown in the
    /// dashboard, the command line and logs, where they would break lines or hide text. Free text that may hold
    /// lines (a grant's reason) passes <paramref name="lineBreaksAllowed"/> for tabs and line breaks.
    /// </summary>
    public string? String(string field, int lengthMax, bool required = false, bool lineBreaksAllowed = false)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            if (required) Fail(field, "Is required.");
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            Fail(field, "Must be a string.");
            return null;
        }
        var text = value.GetString()!;
        if (IsLongerThan(text, lengthMax) || (required && text.Trim().Length == 0))
        {
            Fail(field, required ? $"Must be 1 to {lengthMax} characters." : $"Must be at most {lengthMax} characters.");
            return null;
        }
        if (HasControlCharacter(text, lineBreaksAllowed))
        {
            Fail(field, lineBreaksAllowed ? "Must not contain control characters other than tabs and line breaks." : "Must not contain control characters (such as NUL or a line break).");
            return null;
        }
        return text;
    }

    /// <summary>
    /// An optional label (an assistant id, an identifier, a reason, an external id): a text field whose empty text
    /// reads as absent, so that `""` and a missing field are one request to idempotency and one value when stored
    /// and grouped (usage by assistant already put both in one bucket).
    /// </summary>
    public string? Label(string field, bool lineBreaksAllowed = false) =>
        String(field, Limits.TextLengthMax, lineBreaksAllowed: lineBreaksAllowed) is { Length: > 0 } text ? text : null;

    /// <summary>
    /// Whether a text has more than <paramref name="lengthMax"/> characters, counted as Unicode characters (an
    /// emoji is one), not as the UTF-16 units .NET's Length counts (an emoji is two of those).
    /// </summary>
    public static bool IsLongerThan(string text, int lengthMax) => text.Length > lengthMax && text.EnumerateRunes().Count() > lengthMax;

    /// <summary>
    /// Whether a text holds a control character (C0, DEL, C1), a line or paragraph separator (U+2028, U+2029), or a
    /// bidirectional override or isolate (U+202A to U+202E, U+2066 to U+2069), which reorder what is shown after them.
    /// </summary>
    public static bool HasControlCharacter(string text, bool lineBreaksAllowed = false)
    {
        foreach (var character in text)
        {
            var control = char.IsControl(character) || character is '\u2028' or '\u2029' or (>= '\u202A' and <= '\u202E') or (>= '\u2066' and <= '\u2069');
            if (control && !(lineBreaksAllowed && character is '\t' or '\n' or '\r')) return true;
        }
        return false;
    }

    public DateTimeOffset? Time(string field)
    {
        var text = String(field, 64);
        if (text is null) return null;
        if (Times.TryParse(text, out var time)) return time;
        Fail(field, $"Must be an ISO 8601 date and time {Times.Range}, such as 2026-01-31T00:00:00Z.");
        return null;
    }

    public string[]? Strings(string field, int countMax)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() > countMax
            || value.EnumerateArray().Any(item => item.ValueKind != JsonValueKind.String))
        {
            Fail(field, $"Must be an array of at most {countMax} strings.");
            return null;
        }
        return value.EnumerateArray().Select(item => item.GetString()!).ToArray();
    }

    /// <summary>Metadata: at most 16 pairs of strings of at most 256 characters (SPEC §3).</summary>
    public Dictionary<string, string>? Metadata(string field)
    {
        if (!root.TryGetProperty(field, out var value) || value.ValueKind == JsonValueKind.Null) return null;
        var message = $"Must be an object of at most {Limits.MetadataPairsMax} string values, keys and values of at most {Limits.TextLengthMax} characters, without control characters (values may hold tabs and line breaks).";
        if (value.ValueKind != JsonValueKind.Object)
        {
            Fail(field, message);
            return null;
        }
        var pairs = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var property in value.EnumerateObject())
        {
            var key = property.Name;
            var text = property.Value.ValueKind == JsonValueKind.String ? property.Value.GetString() : null;
            // Keys are names, held to the rule of text fields; values are the caller's data, which may hold lines.
            if (pairs.Count >= Limits.MetadataPairsMax || text is null
                || key.Length == 0 || IsLongerThan(key, Limits.TextLengthMax) || HasControlCharacter(key)
                || IsLongerThan(text, Limits.TextLengthMax) || HasControlCharacter(text, lineBreaksAllowed: true))
            {
                Fail(field, message);
                return null;
            }
            pairs[key] = text;
        }
        // Empty reads as absent, as an empty label does: one request to idempotency, one value stored.
        return pairs.Count == 0 ? null : pairs;
    }

    /// <summary>
    /// The idempotency key from the `Idempotency-Key` header or the body's `idempotencyKey` (rule 2);
    /// both may be given only if they agree.
    /// </summary>
    /// <param name="optional">For a request that may come without a key (an organization's creation): none is then null, not an error.</param>
    public string? IdempotencyKey(HttpRequest request, bool optional = false)
    {
        var header = request.Headers["Idempotency-Key"];
        var fromBody = root.TryGetProperty("idempotencyKey", out var value) && value.ValueKind != JsonValueKind.Null ? value : (JsonElement?)null;
        if (header.Count > 1)
        {
            Fail("idempotencyKey", "Send one Idempotency-Key header.");
            return null;
        }
        string? key = header.Count == 1 ? header[0] : null;
        if (fromBody is { } bodyValue)
        {
            if (bodyValue.ValueKind != JsonValueKind.String)
            {
                Fail("idempotencyKey", "Must be a string.");
                return null;
            }
            var bodyKey = bodyValue.GetString();
            if (key is not null && key != bodyKey)
            {
                Fail("idempotencyKey", "The Idempotency-Key header and the body's idempotencyKey differ.");
                return null;
            }
            key = bodyKey;
        }
        if (optional && key is null) return null;
        if (!Limits.IsValidIdempotencyKey(key))
        {
            Fail("idempotencyKey", $"Is required: 1 to {Limits.IdempotencyKeyLengthMax} printable ASCII characters, in the Idempotency-Key header or the body.");
            return null;
        }
        return key;
    }
}
