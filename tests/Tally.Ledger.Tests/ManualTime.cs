namespace Tally.Ledger.Tests;

/// <summary>A clock the test moves by hand (the testing package with FakeTimeProvider is not served here).</summary>
public sealed class ManualTime(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset now = start;
    private long timestamp;

    public ManualTime() : this(new DateTimeOffset(2026, 1, 15, 12, 0, 0, TimeSpan.Zero)) { }

    public override DateTimeOffset GetUtcNow() => now;

    public override long GetTimestamp() => Interlocked.Read(ref timestamp);

    public override long TimestampFrequency => TimeSpan.TicksPerSecond;

    public void Advance(TimeSpan by)
    {
        now += by;
        Interlocked.Add(ref timestamp, by.Ticks);
    }

    public void Set(DateTimeOffset to) => Advance(to - now);
}
