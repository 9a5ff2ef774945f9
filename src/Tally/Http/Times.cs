using System.Globalization;
using Tally.Ledger.Engine;

namespace Tally.Http;

/// <summary>Times in requests: ISO 8601, UTC unless an offset is given, between the years 2000 and 9000.</summary>
public static class Times
{
    /// <summary>The years a request's time may fall in, as its validation messages say.</summary>
    public const string Range = "between the years 2000 and 9000";

    /// <summary>
    /// Parses a request's time, cut to whole milliseconds (toward the past): Tally stores milliseconds, so a finer
    /// time would be reported and compared one way until it is read back from the store, and another way after
    /// (two grants' burn order could differ between the node that wrote them and every other).
    /// </summary>
    public static bool TryParse(string text, out DateTimeOffset time)
    {
        var parsed = DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out time)
            && time.Year is >= 2000 and <= 9000;
        time = LedgerEngine.WholeMilliseconds(time);
        return parsed;
    }
}
