using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace Tally.Tests.Infrastructure;

/// <summary>A clock the test moves by hand, so expiries and period boundaries happen without waiting.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private readonly Lock gate = new();
    private DateTimeOffset now = start;

    public override DateTimeOffset GetUtcNow()
    {
        lock (gate) return now;
    }

    public void Advance(TimeSpan by)
    {
        lock (gate) now += by;
    }
}

/// <summary>A server whose ledger runs on a <see cref="ManualClock"/>; Kestrel and the sockets keep real time.</summary>
public sealed class ManualClockServerFixture : TallyServerFixture
{
    public ManualClock Clock { get; } = new(new DateTimeOffset(2026, 1, 15, 12, 0, 0, TimeSpan.Zero));

    protected override void Configure(WebApplicationBuilder builder) => builder.Services.AddSingleton<TimeProvider>(Clock);
}
