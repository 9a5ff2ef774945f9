namespace Tally.Ledger.Model;

/// <summary>Period boundaries computed from a subscription's anchor, so that every node agrees on them.</summary>
public static class Periods
{
    /// <summary>The start of the period that contains <paramref name="instant"/>.</summary>
    public static DateTimeOffset StartContaining(DateTimeOffset anchor, PeriodKind period, DateTimeOffset instant)
    {
        var index = IndexContaining(anchor, period, instant);
        return Boundary(anchor, period, index);
    }

    public static DateTimeOffset EndOf(DateTimeOffset anchor, PeriodKind period, DateTimeOffset periodStart)
    {
        var index = IndexContaining(anchor, period, periodStart);
        return Boundary(anchor, period, index + 1);
    }

    /// <summary>
    /// Month and year boundaries are computed from the anchor each time, not from the previous boundary,
    /// so an anchor on the 31st gives Feb 28 and then Mar 31 rather than drifting to the 28th.
    /// </summary>
    public static DateTimeOffset Boundary(DateTimeOffset anchor, PeriodKind period, long index) => period switch
    {
        PeriodKind.Day => anchor.AddDays(index),
        PeriodKind.Week => anchor.AddDays(7 * index),
        PeriodKind.Month => anchor.AddMonths(checked((int)index)),
        _ => anchor.AddYears(checked((int)index)),
    };

    public static long IndexContaining(DateTimeOffset anchor, PeriodKind period, DateTimeOffset instant)
    {
        long estimate = period switch
        {
            PeriodKind.Day => (long)Math.Floor((instant - anchor).TotalDays),
            PeriodKind.Week => (long)Math.Floor((instant - anchor).TotalDays / 7),
            PeriodKind.Month => (instant.Year - anchor.Year) * 12L + instant.Month - anchor.Month,
            _ => instant.Year - anchor.Year,
        };
        // The estimate is off by at most one in either direction; these loops settle it.
        while (Boundary(anchor, period, estimate) > instant) estimate--;
        while (Boundary(anchor, period, estimate + 1) <= instant) estimate++;
        return estimate;
    }
}
