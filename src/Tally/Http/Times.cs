using System.Globalization;

namespace Tally.Http;

/// <summary>Times in requests: ISO 8601, UTC unless an offset is given, between the years 2000 and 9000.</summary>
public static class Times
{
    /// <summary>The years a request's time may fall in, as its validation messages say.</summary>
    public const string Range = "between the years 2000 and 9000";

    public static bool TryParse(string text, out DateTimeOffset time)
    {
        var parsed = DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out time)
            && time.Year is >= 2000 and <= 9000;
        time = time.ToUniversalTime();
        return parsed;
    }
}
