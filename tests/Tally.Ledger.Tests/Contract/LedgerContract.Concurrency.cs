using Tally.Ledger.Engine;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>Rule 1 under load: concurrent callers get exact counts, never an overdraft.</summary>
public abstract partial class LedgerContract
{
    [Fact]
    public async Task SixtyFourCallersMakingTwoThousandConsumptionsOfFiveHundredCreditsGetExactlyFiveHundred()
    {
        const int Callers = 64, Attempts = 2_000, Credits = 500;
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(Credits);
        var next = -1;
        var outcomes = new System.Collections.Concurrent.ConcurrentBag<Outcome<ConsumptionReceipt>>();
        await Task.WhenAll(Enumerable.Range(0, Callers).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref next) < Attempts) outcomes.Add(await ledger.ConsumeAsync(organization, 1));
        })));
        Assert.Equal(Attempts, outcomes.Count);
        Assert.Equal(Credits, outcomes.Count(outcome => outcome.Succeeded));
        Assert.All(outcomes.Where(outcome => !outcome.Succeeded),
            outcome => Assert.Equal(ErrorCode.InsufficientCredits, outcome.Error!.Code));
        Assert.Equal(Credits, outcomes.Where(outcome => outcome.Succeeded).Select(outcome => outcome.Value!.Id).Distinct().Count());
        Assert.All(outcomes, outcome => Assert.False(outcome.Replayed));
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((500L, 0L), (balance.Used, balance.Remaining));
        Assert.Equal(0, await ledger.LedgerRemainingAsync(organization));
        Assert.Equal(Credits, (await ledger.EntriesAsync(organization)).Count(entry => entry.Kind == "consume"));
    }

    [Fact]
    public async Task ConcurrentHoldsConsumptionsAndRefundsAcrossOrganizationsKeepEveryBalanceExact()
    {
        const int Organizations = 8, CallersPerOrganization = 8, Credits = 100;
        await using var ledger = await StartAsync();
        var organizations = new List<string>();
        for (var i = 0; i < Organizations; i++) organizations.Add(await ledger.OrganizationAsync(Credits));
        // Each caller holds 3, captures 2 (releasing 1), consumes 2 and refunds 1 of it: 3 net credits per round.
        var rounds = new int[Organizations];
        await Task.WhenAll(organizations.SelectMany((organization, index) => Enumerable.Range(0, CallersPerOrganization).Select(_ => Task.Run(async () =>
        {
            while (true)
            {
                var hold = await ledger.HoldAsync(organization, 3);
                if (!hold.Succeeded) break;
                var capture = Value(await ledger.CaptureAsync(organization, hold.Value!.Id, 2));
                Assert.Equal(1, capture.Released);
                var consumption = await ledger.ConsumeAsync(organization, 2);
                if (!consumption.Succeeded) break;
                Value(await ledger.RefundAsync(organization, consumption.Value!.Id, 1));
                Interlocked.Increment(ref rounds[index]);
            }
        }))));
        for (var i = 0; i < Organizations; i++)
        {
            var balance = await ledger.BalanceAsync(organizations[i]);
            Assert.Equal(0, balance.Held);
            Assert.Equal(Credits, balance.Used + balance.Remaining);
            Assert.True(balance.Remaining < 3, $"remaining {balance.Remaining} would still allow a hold of 3");
            Assert.Equal(balance.Remaining, await ledger.LedgerRemainingAsync(organizations[i]));
            Assert.True(rounds[i] * 3 <= balance.Used);
        }
    }

    [Fact]
    public async Task ConcurrentSettlementsOfOneHoldSettleItExactlyOnce()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var hold = Value(await ledger.HoldAsync(organization, 30));
        var captures = Enumerable.Range(0, 20).Select(i => ledger.CaptureAsync(organization, hold.Id, 10 + i % 5)).ToList();
        var releases = Enumerable.Range(0, 20).Select(_ => ledger.ReleaseAsync(organization, hold.Id)).ToList();
        await Task.WhenAll(captures.Cast<Task>().Concat(releases));
        var settled = captures.Count(task => task.Result.Succeeded) + releases.Count(task => task.Result.Succeeded);
        Assert.Equal(1, settled);
        Assert.All(captures.Select(task => task.Result).Where(outcome => !outcome.Succeeded),
            outcome => Assert.Equal(ErrorCode.HoldAlreadySettled, outcome.Error!.Code));
        Assert.All(releases.Select(task => task.Result).Where(outcome => !outcome.Succeeded),
            outcome => Assert.Equal(ErrorCode.HoldAlreadySettled, outcome.Error!.Code));
        var captured = captures.Select(task => task.Result).Where(outcome => outcome.Succeeded).Sum(outcome => outcome.Value!.Captured);
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((captured, 100 - captured, 0L), (balance.Used, balance.Remaining, balance.Held));
    }

    [Fact]
    public async Task ConcurrentRefundsOfOneConsumptionNeverReturnMoreThanItConsumed()
    {
        await using var ledger = await StartAsync();
        var organization = await ledger.OrganizationAsync(100);
        var consumption = Value(await ledger.ConsumeAsync(organization, 10));
        var refunds = await Task.WhenAll(Enumerable.Range(0, 40).Select(_ => ledger.RefundAsync(organization, consumption.Id, 1)));
        Assert.Equal(10, refunds.Count(outcome => outcome.Succeeded));
        Assert.All(refunds.Where(outcome => !outcome.Succeeded), outcome => Assert.Equal(ErrorCode.ValidationFailed, outcome.Error!.Code));
        Assert.Equal(Enumerable.Range(1, 10).Select(total => (long)total),
            refunds.Where(outcome => outcome.Succeeded).Select(outcome => outcome.Value!.RefundedTotal).Order());
        var balance = await ledger.BalanceAsync(organization);
        Assert.Equal((0L, 100L), (balance.Used, balance.Remaining));
    }
}
