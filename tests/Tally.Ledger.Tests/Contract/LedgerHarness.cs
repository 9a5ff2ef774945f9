using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores;

namespace Tally.Ledger.Tests.Contract;

/// <summary>An engine on a fresh store with a manual clock, and helpers that every contract test uses.</summary>
public sealed class LedgerHarness : IAsyncDisposable
{
    private readonly IStoreFactory factory;
    private readonly string name = Guid.NewGuid().ToString("N");

    private LedgerHarness(IStoreFactory factory, ManualTime time)
    {
        this.factory = factory;
        Time = time;
    }

    public ManualTime Time { get; }
    public LedgerEngine Engine { get; private set; } = null!;

    public static async Task<LedgerHarness> StartAsync(IStoreFactory factory, ManualTime? time = null)
    {
        var harness = new LedgerHarness(factory, time ?? new ManualTime());
        harness.Engine = new LedgerEngine(factory.Create(harness.name), harness.Time);
        await harness.Engine.StartAsync();
        return harness;
    }

    /// <summary>Stops the engine and opens the same data again, as a process restart would.</summary>
    public async Task RestartAsync()
    {
        await Engine.DisposeAsync();
        Engine = new LedgerEngine(factory.Reopen(name), Time);
        await Engine.StartAsync();
    }

    /// <summary>An organization with an active monthly subscription of <paramref name="creditsPerPeriod"/> (null = unlimited).</summary>
    public async Task<string> OrganizationAsync(long? creditsPerPeriod, long rolloverMax = 0, PeriodKind period = PeriodKind.Month)
    {
        var organization = Value(await Engine.CreateOrganizationAsync("Acme"));
        Value(await Engine.PutSubscriptionAsync(organization.Id,
            new SubscriptionRequest("pro", creditsPerPeriod, period, Time.GetUtcNow(), rolloverMax)));
        return organization.Id;
    }

    public async Task<BalanceView> BalanceAsync(string organizationId) => Value(await Engine.GetBalanceAsync(organizationId));

    public Task<Outcome<ConsumptionReceipt>> ConsumeAsync(string organizationId, long credits = 1, string? key = null) =>
        Engine.ConsumeAsync(new ConsumeRequest(organizationId, credits, key ?? Guid.NewGuid().ToString()));

    public async Task AssertVerifiedAsync()
    {
        var report = await Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, "verify found: " + string.Join("; ", report.Differences));
    }

    public static T Value<T>(Outcome<T> outcome)
    {
        Assert.True(outcome.Succeeded, $"expected success, got {outcome.Error?.Code}: {outcome.Error?.Message}");
        return outcome.Value!;
    }

    public async ValueTask DisposeAsync()
    {
        await AssertVerifiedAsync();
        await Engine.DisposeAsync();
    }
}
