using FsCheck;
using FsCheck.Fluent;
using Tally.Ledger.Engine;
using Tally.Ledger.Model;
using static Tally.Ledger.Tests.Contract.LedgerHarness;

namespace Tally.Ledger.Tests.Contract;

/// <summary>
/// A property over random sequences of commands: whatever the sequence, remaining never goes below zero,
/// every outcome agrees with the balance read just before it, the balance equals what the ledger entries
/// add up to, and the verify pass is clean at the end of each sequence.
/// </summary>
public abstract partial class LedgerContract
{
    /// <summary>Sequences tried per run: enough to cross periods, expiries and restarts, few enough to stay within seconds.</summary>
    private const int SequencesPerRun = 100;

    /// <summary>Commands in the longest sequence.</summary>
    private const int StepsPerSequenceMax = 60;

    [Fact]
    public async Task RandomCommandSequencesNeverOverdrawAndAlwaysAgreeWithTheLedger()
    {
        var config = Config.QuickThrowOnFailure.WithMaxTest(SequencesPerRun).WithEndSize(StepsPerSequenceMax);
        var property = Prop.ForAll(Scenarios.Arbitrary, (Scenario scenario) => RunScenarioAsync(scenario).GetAwaiter().GetResult());
        // FsCheck runs synchronously; off the test's synchronization context, blocking on the engine cannot deadlock.
        await Task.Run(() => Check.One(config, property));
    }

    private async Task RunScenarioAsync(Scenario scenario)
    {
        await using var ledger = await StartAsync();
        var run = new ScenarioRun(ledger, scenario, await ledger.OrganizationAsync(scenario.CreditsPerPeriod, scenario.RolloverMax, scenario.Period));
        for (var index = 0; index < scenario.Steps.Length; index++)
        {
            try
            {
                await run.ApplyAsync(scenario.Steps[index]);
            }
            catch (Exception exception) when (exception is not StepFailedException)
            {
                throw new StepFailedException($"step {index} ({scenario.Steps[index]}) at {ledger.Time.GetUtcNow():O} failed: {exception.Message}", exception);
            }
        }
        Value(await ledger.Engine.AdvanceAsync(run.Organization));
        await run.AssertLedgerAgreesAsync(await ledger.BalanceAsync(run.Organization));
    }

    private sealed class StepFailedException(string message, Exception inner) : Exception(message, inner);

    public sealed record Scenario(long? CreditsPerPeriod, long RolloverMax, PeriodKind Period, Step[] Steps)
    {
        public override string ToString() =>
            $"plan {CreditsPerPeriod?.ToString() ?? "unlimited"}/{Period} rollover {RolloverMax}: {string.Join(", ", Steps.Select(step => step.ToString()))}";
    }

    public abstract record Step;
    public sealed record ConsumeStep(int Credits) : Step;
    public sealed record HoldStep(int Credits, int TtlSeconds) : Step;
    public sealed record CaptureStep(int Hold, int Credits) : Step;
    public sealed record ReleaseStep(int Hold) : Step;
    public sealed record RefundStep(int Consumption, int? Credits) : Step;
    public sealed record GrantStep(int Credits, int Priority, int? ExpiresInHours) : Step;
    public sealed record AdvanceStep(int Seconds, bool Sweep) : Step;
    public sealed record ReplayStep(int Consumption, bool OtherCredits) : Step;
    public sealed record CancelStep : Step;
    public sealed record SubscribeStep(long? CreditsPerPeriod) : Step;
    public sealed record RestartStep : Step;

    private static class Scenarios
    {
        private static readonly int[] TtlSeconds = [1, 60, 300, 3_600, 86_400];
        private static readonly int[] AdvanceSeconds = [1, 59, 300, 3_600, 43_200, 86_400, 7 * 86_400, 31 * 86_400, 95 * 86_400];

        private static Gen<Step> Steps() => Gen.Frequency<Step>(
            (25, Gen.Choose(1, 30).Select(credits => (Step)new ConsumeStep(credits))),
            (10, Gen.Choose(1, 30).SelectMany(_ => Gen.Elements(TtlSeconds), (credits, ttl) => (Step)new HoldStep(credits, ttl))),
            (8, Gen.Choose(0, 99).SelectMany(_ => Gen.Choose(1, 35), (hold, credits) => (Step)new CaptureStep(hold, credits))),
            (5, Gen.Choose(0, 99).Select(hold => (Step)new ReleaseStep(hold))),
            (8, Gen.Choose(0, 99).SelectMany(_ => Gen.Elements<int?>(null, 1, 2, 5, 10, 40), (consumption, credits) => (Step)new RefundStep(consumption, credits))),
            (6, Gen.Choose(1, 60).SelectMany(_ => Gen.Choose(-2, 2), (credits, priority) => (credits, priority))
                .SelectMany(_ => Gen.Elements<int?>(null, 1, 24, 200, 2_000), (pair, hours) => (Step)new GrantStep(pair.credits, pair.priority, hours))),
            (10, Gen.Elements(AdvanceSeconds).SelectMany(_ => Gen.Elements(true, false), (seconds, sweep) => (Step)new AdvanceStep(seconds, sweep))),
            (4, Gen.Choose(0, 99).SelectMany(_ => Gen.Elements(true, false), (consumption, other) => (Step)new ReplayStep(consumption, other))),
            (1, Gen.Constant<Step>(new CancelStep())),
            (2, Gen.Elements<long?>(0, 20, 100, null).Select(credits => (Step)new SubscribeStep(credits))),
            (1, Gen.Constant<Step>(new RestartStep())));

        private static readonly Gen<Scenario> Generator =
            from credits in Gen.Elements<long?>(0, 10, 50, 100, null)
            from rollover in Gen.Elements(0L, 5L, 30L, 1_000L)
            from period in Gen.Elements(PeriodKind.Day, PeriodKind.Week, PeriodKind.Month)
            from steps in Gen.Sized(size => Gen.ArrayOf(Steps(), Math.Min(size, StepsPerSequenceMax)))
            select new Scenario(credits, rollover, period, steps);

        public static Arbitrary<Scenario> Arbitrary => Generator.ToArbitrary();
    }

    /// <summary>What one sequence has done so far: the model the real outcomes are checked against.</summary>
    private sealed class ScenarioRun(LedgerHarness ledger, Scenario scenario, string organization)
    {
        /// <param name="Reserved">What the hold took from grants: its credits, or none on an unlimited plan.</param>
        private sealed record ModelHold(string Id, long Credits, DateTimeOffset ExpiresAt, long Reserved)
        {
            public bool Settled { get; set; }
        }

        private sealed record ModelConsumption(string Id, string Key, long Credits, DateTimeOffset? PeriodStart, ConsumptionReceipt? Receipt)
        {
            public long Refunded { get; set; }
        }

        private readonly List<ModelHold> holds = [];
        private readonly List<ModelConsumption> consumptions = [];
        private long? creditsPerPeriod = scenario.CreditsPerPeriod;
        private DateTimeOffset? usagePeriodStart;

        public string Organization => organization;

        public async Task ApplyAsync(Step step)
        {
            var before = await ledger.BalanceAsync(organization);
            if (before.Subscription.Status == "active") usagePeriodStart = before.Subscription.PeriodStart;
            // Time alone changes nothing on disk: after a clock advance without the sweep, or a restart, what is due
            // (expiries, renewals) is computed on read but written only by the next command.
            var writes = true;
            switch (step)
            {
                case ConsumeStep consume: await ConsumeAsync(before, consume); break;
                case HoldStep hold: await HoldAsync(before, hold); break;
                case CaptureStep capture: await CaptureAsync(before, capture); break;
                case ReleaseStep release: await ReleaseAsync(before, release); break;
                case RefundStep refund: await RefundAsync(before, refund); break;
                case GrantStep grant: await GrantAsync(before, grant); break;
                case ReplayStep replay: await ReplayAsync(before, replay); break;
                case CancelStep: Value(await ledger.Engine.CancelSubscriptionAsync(organization)); break;
                case SubscribeStep subscribe:
                    creditsPerPeriod = subscribe.CreditsPerPeriod;
                    await ledger.SubscribeAsync(organization, creditsPerPeriod, scenario.RolloverMax, scenario.Period,
                        before.Subscription.Anchor ?? ledger.Time.GetUtcNow());
                    break;
                case AdvanceStep advance:
                    ledger.Time.Advance(TimeSpan.FromSeconds(advance.Seconds));
                    if (advance.Sweep) Value(await ledger.Engine.AdvanceAsync(organization));
                    writes = advance.Sweep;
                    break;
                case RestartStep:
                    await ledger.RestartAsync();
                    AssertSame(before, await ledger.BalanceAsync(organization));
                    writes = false;
                    break;
            }
            var after = await ledger.BalanceAsync(organization);
            AssertInvariants(after);
            if (writes) await AssertLedgerAgreesAsync(after);
        }

        public async Task AssertLedgerAgreesAsync(BalanceView balance)
        {
            if (balance.Unlimited) return;
            Assert.Equal(balance.Remaining, await ledger.LedgerRemainingAsync(organization));
            Assert.Equal(balance.Remaining, balance.Grants.Sum(grant => grant.Remaining));
        }

        private bool Limited(BalanceView balance) => balance.Subscription.Status == "active" && !balance.Unlimited;

        /// <summary>Rules 1 and 4 as the model sees them: why a consumption or hold of these credits must be refused, if it must.</summary>
        private ErrorCode? ExpectedRefusal(BalanceView before, long credits) =>
            before.Subscription.Status != "active" ? ErrorCode.NoActiveSubscription
            : Limited(before) && credits > before.Remaining ? ErrorCode.InsufficientCredits
            : null;

        private async Task ConsumeAsync(BalanceView before, ConsumeStep step)
        {
            var key = NewKey();
            var outcome = await ledger.ConsumeAsync(organization, step.Credits, key);
            var after = await ledger.BalanceAsync(organization);
            if (ExpectedRefusal(before, step.Credits) is { } refusal)
            {
                Refused(outcome, refusal);
                AssertSame(before, after);
                return;
            }
            var receipt = Value(outcome);
            consumptions.Add(new ModelConsumption(receipt.Id, key, step.Credits, before.Subscription.PeriodStart, receipt));
            Assert.Equal(before.Used + step.Credits, after.Used);
            Assert.Equal(before.Unlimited ? -1 : before.Remaining - step.Credits, receipt.Remaining);
            Assert.Equal(receipt.Remaining, after.Remaining);
        }

        private async Task HoldAsync(BalanceView before, HoldStep step)
        {
            var outcome = await ledger.HoldAsync(organization, step.Credits, ttlSeconds: step.TtlSeconds);
            var after = await ledger.BalanceAsync(organization);
            if (ExpectedRefusal(before, step.Credits) is { } refusal)
            {
                Refused(outcome, refusal);
                AssertSame(before, after);
                return;
            }
            var receipt = Value(outcome);
            var reserved = before.Unlimited ? 0 : step.Credits;
            holds.Add(new ModelHold(receipt.Id, step.Credits, receipt.ExpiresAt, reserved));
            Assert.Equal((before.Used, before.Held + reserved), (after.Used, after.Held));
            Assert.Equal(before.Unlimited ? -1 : before.Remaining - step.Credits, after.Remaining);
        }

        private async Task CaptureAsync(BalanceView before, CaptureStep step)
        {
            if (holds.Count == 0)
            {
                Refused(await ledger.CaptureAsync(organization, Guid.NewGuid().ToString(), step.Credits), ErrorCode.NotFound);
                return;
            }
            var hold = holds[step.Hold % holds.Count];
            var outcome = await ledger.CaptureAsync(organization, hold.Id, step.Credits);
            var after = await ledger.BalanceAsync(organization);
            if (RefusedAsSettledOrExpired(hold, outcome)) { AssertSame(before, after); return; }
            if (step.Credits > hold.Credits)
            {
                Refused(outcome, ErrorCode.ValidationFailed);
                AssertSame(before, after);
                return;
            }
            // A hold that reserved nothing (taken on an unlimited plan) spends its capture now, as a consumption would.
            var spentNow = hold.Reserved == 0 && !before.Unlimited;
            if (spentNow && ExpectedRefusal(before, step.Credits) is { } refusal)
            {
                Refused(outcome, refusal);
                AssertSame(before, after);
                return;
            }
            var receipt = Value(outcome);
            hold.Settled = true;
            consumptions.Add(new ModelConsumption(receipt.ConsumptionId, "", step.Credits, usagePeriodStart, null));
            Assert.Equal((step.Credits, hold.Credits - step.Credits), (receipt.Captured, receipt.Released));
            Assert.Equal(before.Held - hold.Reserved, after.Held);
            if (after.Subscription.Status == "active") Assert.Equal(before.Used + step.Credits, after.Used);
            if (spentNow) Assert.Equal(before.Remaining - step.Credits, after.Remaining);
            else AssertReturnedAtMost(before, after, hold.Reserved - step.Credits);
        }

        private async Task ReleaseAsync(BalanceView before, ReleaseStep step)
        {
            if (holds.Count == 0)
            {
                Refused(await ledger.ReleaseAsync(organization, Guid.NewGuid().ToString()), ErrorCode.NotFound);
                return;
            }
            var hold = holds[step.Hold % holds.Count];
            var outcome = await ledger.ReleaseAsync(organization, hold.Id);
            var after = await ledger.BalanceAsync(organization);
            if (RefusedAsSettledOrExpired(hold, outcome)) { AssertSame(before, after); return; }
            Assert.Equal(hold.Credits, Value(outcome).Released);
            hold.Settled = true;
            Assert.Equal((before.Used, before.Held - hold.Reserved), (after.Used, after.Held));
            AssertReturnedAtMost(before, after, hold.Reserved);
        }

        private bool RefusedAsSettledOrExpired<T>(ModelHold hold, Outcome<T> outcome)
        {
            if (hold.Settled)
            {
                Refused(outcome, ErrorCode.HoldAlreadySettled);
                return true;
            }
            if (ledger.Time.GetUtcNow() >= hold.ExpiresAt)
            {
                Refused(outcome, ErrorCode.HoldExpired);
                return true;
            }
            return false;
        }

        private async Task RefundAsync(BalanceView before, RefundStep step)
        {
            if (consumptions.Count == 0)
            {
                Refused(await ledger.RefundAsync(organization, Guid.NewGuid().ToString(), step.Credits), ErrorCode.NotFound);
                return;
            }
            var consumption = consumptions[step.Consumption % consumptions.Count];
            var outcome = await ledger.RefundAsync(organization, consumption.Id, step.Credits);
            var after = await ledger.BalanceAsync(organization);
            var refundable = consumption.Credits - consumption.Refunded;
            var amount = step.Credits ?? refundable;
            if (amount < 1 || amount > refundable)
            {
                Refused(outcome, ErrorCode.ValidationFailed);
                AssertSame(before, after);
                return;
            }
            var receipt = Value(outcome);
            consumption.Refunded += amount;
            Assert.Equal((amount, consumption.Refunded), (receipt.Credits, receipt.RefundedTotal));
            var sameActivePeriod = after.Subscription.Status == "active" && consumption.PeriodStart == before.Subscription.PeriodStart;
            Assert.Equal(sameActivePeriod ? before.Used - amount : before.Used, after.Used);
            Assert.Equal(before.Held, after.Held);
            AssertReturnedAtMost(before, after, amount);
        }

        private async Task GrantAsync(BalanceView before, GrantStep step)
        {
            var expiresAt = step.ExpiresInHours is { } hours ? ledger.Time.GetUtcNow().AddHours(hours) : (DateTimeOffset?)null;
            var grant = Value(await ledger.GrantAsync(organization, step.Credits, priority: step.Priority, expiresAt: expiresAt));
            Assert.Equal(step.Credits, grant.Remaining);
            var after = await ledger.BalanceAsync(organization);
            Assert.Equal(before.Unlimited ? -1 : before.Remaining + step.Credits, after.Remaining);
            Assert.Equal((before.Used, before.Held), (after.Used, after.Held));
        }

        private async Task ReplayAsync(BalanceView before, ReplayStep step)
        {
            var consumed = consumptions.Where(consumption => consumption.Receipt is not null).ToList();
            if (consumed.Count == 0)
            {
                Value(await ledger.Engine.AdvanceAsync(organization));
                return;
            }
            var consumption = consumed[step.Consumption % consumed.Count];
            var outcome = await ledger.ConsumeAsync(organization, consumption.Credits + (step.OtherCredits ? 1 : 0), consumption.Key);
            if (step.OtherCredits)
            {
                Refused(outcome, ErrorCode.IdempotencyConflict);
            }
            else
            {
                Assert.True(outcome.Replayed);
                Assert.Equal(consumption.Receipt, Value(outcome));
            }
            AssertSame(before, await ledger.BalanceAsync(organization));
        }

        /// <summary>Returned credits come back to spending unless their grant has expired meanwhile: never more.</summary>
        private static void AssertReturnedAtMost(BalanceView before, BalanceView after, long returned)
        {
            if (before.Unlimited) return;
            Assert.InRange(after.Remaining, before.Remaining, before.Remaining + returned);
        }

        private static void AssertSame(BalanceView expected, BalanceView actual)
        {
            Assert.Equal((expected.Total, expected.Used, expected.Remaining, expected.Held), (actual.Total, actual.Used, actual.Remaining, actual.Held));
            // Compared by content: a renewal not yet written is computed afresh on each read, with new grant ids.
            Assert.Equal(expected.Grants.Select(Content).Order(), actual.Grants.Select(Content).Order());
            static string Content(GrantView grant) => $"{grant.Source} {grant.Credits} {grant.Remaining} {grant.Priority} {grant.ExpiresAt:O}";
        }

        private static void AssertInvariants(BalanceView balance)
        {
            Assert.True(balance.Held >= 0);
            if (balance.Unlimited)
            {
                Assert.Equal((-1L, -1L), (balance.Total, balance.Remaining));
                return;
            }
            Assert.True(balance.Remaining >= 0, $"remaining {balance.Remaining} is negative");
            Assert.True(balance.Used >= 0, $"used {balance.Used} is negative");
            Assert.Equal(balance.Total, balance.Used + balance.Remaining);
            Assert.All(balance.Grants, grant => Assert.InRange(grant.Remaining, 0, grant.Credits));
        }
    }
}
