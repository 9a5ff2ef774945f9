using System.Net;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// SPEC §2 rules 2 and 3 through real crashes: the real `tally` executable under 32 concurrent clients is
/// killed with SIGKILL at a random moment, started again on the same store, and must still hold every
/// consumption it acknowledged, charge none twice and verify clean.
/// </summary>
/// <remarks>Both stores' rounds are in one class, so they run one after the other rather than compete for the cores.</remarks>
public sealed class CrashTests(PostgresFixture postgres, ITestOutputHelper output) : IClassFixture<PostgresFixture>
{
    private const int SqliteRounds = 10;
    private const int PostgresRounds = 5;

    [Fact]
    public async Task EveryAcknowledgedConsumptionSurvivesTenSigkillsOnSqliteAndNoneIsChargedTwice()
    {
        await using var tally = await TallyProcess.StartAsync();
        await CrashRounds.RunAsync(tally, SqliteRounds, TestSeed.Create(output, nameof(EveryAcknowledgedConsumptionSurvivesTenSigkillsOnSqliteAndNoneIsChargedTwice)), output);
    }

    [PostgresFact]
    public async Task EveryAcknowledgedConsumptionSurvivesFiveSigkillsOnPostgresqlAndNoneIsChargedTwice()
    {
        var connection = postgres.CreateDatabase("tally_crash");
        await using var tally = await TallyProcess.StartAsync(arguments: ["--store", "postgres", "--connection", connection]);
        await CrashRounds.RunAsync(tally, PostgresRounds, TestSeed.Create(output, nameof(EveryAcknowledgedConsumptionSurvivesFiveSigkillsOnPostgresqlAndNoneIsChargedTwice)), output);
    }
}

/// <summary>The rounds of a crash test, the same on every store.</summary>
public static class CrashRounds
{
    /// <summary>Concurrent clients, each on its own connection, as separate backend processes would be.</summary>
    public const int Clients = 32;

    /// <summary>Far more than any round can spend, so every consumption is accepted and the arithmetic stays exact.</summary>
    private const long CreditsPerPeriod = 1_000_000_000;

    /// <summary>The kill comes this long after the load starts, drawn at random: from before the first commit to deep into the load.</summary>
    private const int KillAfterMillisecondsMin = 50;
    private const int KillAfterMillisecondsMax = 1_500;

    /// <summary>
    /// Each round: load, SIGKILL at a random moment, restart on the same store, then check that every
    /// acknowledged consumption replays (200, Idempotent-Replayed, same id); that `used` counts exactly the
    /// consumptions present (earlier rounds, acknowledged, and unanswered ones that had committed, as their
    /// replay shows); that the ledger holds one one-credit consumption per idempotency key; and verify.
    /// </summary>
    public static async Task RunAsync(TallyProcess tally, int rounds, Random random, ITestOutputHelper output)
    {
        var organization = await tally.CreateOrganizationAsync(creditsPerPeriod: CreditsPerPeriod);
        var present = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var round = 1; round <= rounds; round++)
        {
            var killAfter = TimeSpan.FromMilliseconds(random.Next(KillAfterMillisecondsMin, KillAfterMillisecondsMax + 1));
            var load = ConsumptionLoad.RunAsync(tally, organization.Key, $"round{round}", Clients, CancellationToken.None);
            await Task.Delay(killAfter);
            await tally.KillAsync();
            var attempts = await load;
            await tally.StartAsync();

            var context = $"round {round} (killed after {killAfter.TotalMilliseconds} ms)";
            var refused = attempts.Where(attempt => attempt.Status is not null && !attempt.Acknowledged).ToList();
            Assert.True(refused.Count == 0, $"{context}: every answer before the kill is a 201; got {string.Join(", ", refused.Take(5))}");
            var acknowledged = attempts.Where(attempt => attempt.Acknowledged).ToList();
            var unanswered = attempts.Where(attempt => attempt.Failure is not null).ToList();
            var usedAfterRestart = await UsedAsync(tally, organization.Id);

            await AssertAcknowledgedReplayAsync(tally, organization.Key, acknowledged, context);
            var committedUnanswered = await ReplayUnansweredAsync(tally, organization.Key, unanswered, present, context);
            foreach (var attempt in acknowledged) present.Add(attempt.IdempotencyKey, attempt.ConsumptionId!);

            Assert.True(usedAfterRestart == present.Count - (unanswered.Count - committedUnanswered),
                $"{context}: used after the restart is {usedAfterRestart}; the consumptions present before the replays are "
                + $"{present.Count - (unanswered.Count - committedUnanswered)} (earlier rounds, {acknowledged.Count} acknowledged, {committedUnanswered} unanswered but committed)");
            Assert.Equal(present.Count, await UsedAsync(tally, organization.Id));
            await AssertLedgerHoldsEachConsumptionOnceAsync(tally, organization.Id, present, context);
            await tally.AssertLedgerVerifiedAsync();
            output.WriteLine($"{context}: {attempts.Count} sent, {acknowledged.Count} acknowledged, {unanswered.Count} unanswered "
                + $"({committedUnanswered} had committed), {present.Count} consumptions in the ledger");
        }
    }

    private static async Task<long> UsedAsync(TallyApi tally, string organizationId) =>
        (await tally.AdminAsync(HttpMethod.Get, $"/v1/admin/organizations/{organizationId}/balance")).Expect(HttpStatusCode.OK).Long("used");

    private static async Task AssertAcknowledgedReplayAsync(TallyApi tally, TestKey key, IReadOnlyList<Attempt> acknowledged, string context)
    {
        var replays = await ConsumptionLoad.ForEachAsync(acknowledged, async attempt => (attempt, await ConsumptionLoad.ReplayAsync(tally, key, attempt.IdempotencyKey)));
        foreach (var (attempt, replay) in replays)
        {
            Assert.True(replay.Status == HttpStatusCode.OK && replay.IsReplay && replay.String("id") == attempt.ConsumptionId,
                $"{context}: acknowledged {attempt.IdempotencyKey} ({attempt.ConsumptionId}) must replay with 200 and the same id; got {(int)replay.Status} {replay.Text}");
        }
    }

    /// <summary>
    /// Replays the consumptions whose answer the kill cut off: each either committed (a 200 replay) or left no
    /// trace (a 201, created now). Adds them all to <paramref name="present"/>; returns how many had committed.
    /// </summary>
    private static async Task<int> ReplayUnansweredAsync(
        TallyApi tally, TestKey key, IReadOnlyList<Attempt> unanswered, Dictionary<string, string> present, string context)
    {
        var replays = await ConsumptionLoad.ForEachAsync(unanswered, async attempt => (attempt, await ConsumptionLoad.ReplayAsync(tally, key, attempt.IdempotencyKey)));
        var committed = 0;
        foreach (var (attempt, replay) in replays)
        {
            var wasCommitted = replay.Status == HttpStatusCode.OK && replay.IsReplay;
            Assert.True(wasCommitted || replay.Status == HttpStatusCode.Created,
                $"{context}: unanswered {attempt.IdempotencyKey} must replay with 200 or be created with 201; got {(int)replay.Status} {replay.Text}");
            if (wasCommitted) committed++;
            present.Add(attempt.IdempotencyKey, replay.String("id"));
        }
        return committed;
    }

    /// <summary>Consumption entries carry the credits they took as a negative amount, one entry per grant drawn from.</summary>
    private static async Task AssertLedgerHoldsEachConsumptionOnceAsync(TallyApi tally, string organizationId, Dictionary<string, string> present, string context)
    {
        var consumed = (await tally.LedgerEntriesAsync(organizationId))
            .Where(entry => entry["kind"]!.GetValue<string>() == "consume")
            .GroupBy(entry => entry["referenceId"]!.GetValue<string>())
            .ToDictionary(group => group.Key, group => -group.Sum(entry => entry["credits"]!.GetValue<long>()));
        Assert.True(present.Values.Distinct().Count() == present.Count, $"{context}: two idempotency keys answered with one consumption id");
        Assert.True(consumed.Count == present.Count, $"{context}: the ledger has {consumed.Count} consumptions; {present.Count} idempotency keys were consumed");
        Assert.True(consumed.Values.All(credits => credits == 1), $"{context}: a consumption was charged more than its one credit");
        Assert.True(present.Values.All(consumed.ContainsKey), $"{context}: a consumption answered with an id is missing from the ledger");
    }
}
