using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using Tally.Ledger.Stores;

namespace Tally.Ledger.Tests.Contract;

/// <summary>An engine on a fresh store with a manual clock, and helpers that every contract test uses.</summary>
public sealed class LedgerHarness : IAsyncDisposable
{
    /// <summary>Entries read per page when a test adds up an organization's ledger.</summary>
    private const int EntriesPageSize = Limits.PageSizeMax;

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
        var organization = await OrganizationWithoutSubscriptionAsync();
        await SubscribeAsync(organization, creditsPerPeriod, rolloverMax, period);
        return organization;
    }

    public async Task<string> OrganizationWithoutSubscriptionAsync() => Value(await Engine.CreateOrganizationAsync("Acme")).Id;

    public async Task<SubscriptionView> SubscribeAsync(
        string organizationId, long? creditsPerPeriod, long rolloverMax = 0, PeriodKind period = PeriodKind.Month, DateTimeOffset? anchor = null) =>
        Value(await Engine.PutSubscriptionAsync(organizationId,
            new SubscriptionRequest("pro", creditsPerPeriod, period, anchor ?? Time.GetUtcNow(), rolloverMax)));

    public async Task<BalanceView> BalanceAsync(string organizationId) => Value(await Engine.GetBalanceAsync(organizationId));

    public Task<Outcome<ConsumptionReceipt>> ConsumeAsync(string organizationId, long credits = 1, string? key = null) =>
        Engine.ConsumeAsync(new ConsumeRequest(organizationId, credits, key ?? NewKey()));

    public Task<Outcome<HoldReceipt>> HoldAsync(string organizationId, long credits, string? key = null, int ttlSeconds = Limits.HoldTtlSecondsDefault) =>
        Engine.HoldAsync(new HoldRequest(organizationId, credits, key ?? NewKey(), ttlSeconds));

    public Task<Outcome<CaptureReceipt>> CaptureAsync(string organizationId, string holdId, long credits, string? key = null) =>
        Engine.CaptureAsync(organizationId, holdId, credits, key ?? NewKey());

    public Task<Outcome<ReleaseReceipt>> ReleaseAsync(string organizationId, string holdId, string? key = null) =>
        Engine.ReleaseAsync(organizationId, holdId, key ?? NewKey());

    public Task<Outcome<RefundReceipt>> RefundAsync(string organizationId, string consumptionId, long? credits = null, string? key = null) =>
        Engine.RefundAsync(organizationId, consumptionId, credits, key ?? NewKey());

    public Task<Outcome<GrantView>> GrantAsync(
        string organizationId, long credits, string? key = null, int priority = 0, DateTimeOffset? expiresAt = null,
        GrantSource source = GrantSource.Topup) =>
        Engine.GrantAsync(new GrantRequest(organizationId, credits, key ?? NewKey(), source, priority, expiresAt));

    /// <summary>A top-up that must succeed; returns the grant's id.</summary>
    public async Task<string> TopUpAsync(string organizationId, long credits, int priority = 0, DateTimeOffset? expiresAt = null) =>
        Value(await GrantAsync(organizationId, credits, priority: priority, expiresAt: expiresAt)).Id;

    /// <summary>The remaining credits of one grant, or null when it has expired (it then leaves the balance).</summary>
    public async Task<long?> GrantRemainingAsync(string organizationId, string grantId) =>
        (await BalanceAsync(organizationId)).Grants.SingleOrDefault(grant => grant.Id == grantId)?.Remaining;

    /// <summary>Every ledger entry of an organization, oldest first, read through the store's public listing.</summary>
    public async Task<List<LedgerEntryView>> EntriesAsync(string organizationId)
    {
        var entries = new List<LedgerEntryView>();
        string? cursor = null;
        do
        {
            var page = await Engine.Store.ListEntriesAsync(organizationId, cursor, EntriesPageSize, CancellationToken.None);
            entries.AddRange(page.Items);
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        entries.Reverse();
        return entries;
    }

    /// <summary>
    /// What the ledger says the organization may still spend: every entry that names a grant, added up. Holds
    /// reserve by taking from grants, so this equals the balance's remaining once time-driven changes are written.
    /// </summary>
    public async Task<long> LedgerRemainingAsync(string organizationId) =>
        (await EntriesAsync(organizationId)).Where(entry => entry.GrantId is not null).Sum(entry => entry.Credits);

    public async Task AssertVerifiedAsync()
    {
        var report = await Engine.Store.VerifyAsync(CancellationToken.None);
        Assert.True(report.Clean, "verify found: " + string.Join("; ", report.Differences));
    }

    public static string NewKey() => Guid.NewGuid().ToString("N");

    public static T Value<T>(Outcome<T> outcome)
    {
        Assert.True(outcome.Succeeded, $"expected success, got {outcome.Error?.Code}: {outcome.Error?.Message}");
        return outcome.Value!;
    }

    /// <summary>Asserts a refusal with this code and returns its error.</summary>
    public static LedgerError Refused<T>(Outcome<T> outcome, ErrorCode code)
    {
        Assert.False(outcome.Succeeded, $"expected {code}, got a success");
        Assert.Equal(code, outcome.Error!.Code);
        Assert.False(outcome.Replayed);
        return outcome.Error;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await AssertVerifiedAsync();
        }
        finally
        {
            await Engine.DisposeAsync();
        }
    }
}
