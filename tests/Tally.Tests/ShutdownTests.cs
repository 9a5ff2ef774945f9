using System.Net;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// docs/operations.md "Shutdown" on the real process: SIGTERM under 32 concurrent clients. Whatever was answered
/// with success is durable; whatever was refused or cut off at the connection was not charged; nothing
/// accepted is left unanswered; the process exits with 0 and the ledger verifies.
/// </summary>
public sealed class ShutdownTests(ITestOutputHelper output)
{
    private const int Rounds = 3;
    private const int TerminateAfterMillisecondsMin = 200;
    private const int TerminateAfterMillisecondsMax = 1_500;

    [Fact]
    public async Task OnSigtermUnderLoadEverySuccessIsDurableEveryRefusalOrCutConnectionIsUnchargedAndTheExitCodeIsZero()
    {
        var random = TestSeed.Create(output, nameof(OnSigtermUnderLoadEverySuccessIsDurableEveryRefusalOrCutConnectionIsUnchargedAndTheExitCodeIsZero));
        await using var tally = await TallyProcess.StartAsync();
        var organization = await tally.CreateOrganizationAsync(creditsPerPeriod: 1_000_000_000);
        long consumed = 0;

        for (var round = 1; round <= Rounds; round++)
        {
            var terminateAfter = TimeSpan.FromMilliseconds(random.Next(TerminateAfterMillisecondsMin, TerminateAfterMillisecondsMax + 1));
            var load = ConsumptionLoad.RunAsync(tally, organization.Key, $"term{round}", CrashRounds.Clients, CancellationToken.None);
            await Task.Delay(terminateAfter);
            var exitCode = await tally.TerminateAsync();
            var attempts = await load;
            await tally.StartAsync();

            var context = $"round {round} (SIGTERM after {terminateAfter.TotalMilliseconds} ms)";
            Assert.True(exitCode == 0, $"{context}: tally exited with {exitCode}:\n{tally.Output}");
            var acknowledged = attempts.Where(attempt => attempt.Acknowledged).ToList();
            var refused = attempts.Where(attempt => attempt.Status is not null && !attempt.Acknowledged).ToList();
            var cut = attempts.Where(attempt => attempt.Failure is not null).ToList();
            Assert.All(refused, attempt => Assert.True(attempt.Status == HttpStatusCode.ServiceUnavailable && attempt.Code == "unavailable",
                $"{context}: a consumption refused during shutdown is 503 unavailable; got {attempt}"));
            Assert.Equal(consumed + acknowledged.Count, (await tally.SnapshotAsync(organization.Id)).Used);

            foreach (var attempt in acknowledged)
            {
                var replay = await ConsumptionLoad.ReplayAsync(tally, organization.Key, attempt.IdempotencyKey);
                Assert.True(replay.Status == HttpStatusCode.OK && replay.IsReplay && replay.String("id") == attempt.ConsumptionId,
                    $"{context}: {attempt.IdempotencyKey} was answered 201 before SIGTERM and must replay with 200 and the same id; got {(int)replay.Status} {replay.Text}");
            }
            foreach (var attempt in refused.Concat(cut))
            {
                // Not charged: the same key now creates the consumption afresh.
                var retry = await ConsumptionLoad.ReplayAsync(tally, organization.Key, attempt.IdempotencyKey);
                Assert.True(retry.Status == HttpStatusCode.Created,
                    $"{context}: {attempt.IdempotencyKey} ({attempt.Status?.ToString() ?? attempt.Failure}) was not answered with success, so it must not have been charged; its retry got {(int)retry.Status} {retry.Text}");
            }
            consumed += acknowledged.Count + refused.Count + cut.Count;
            Assert.Equal(consumed, (await tally.SnapshotAsync(organization.Id)).Used);
            await tally.AssertLedgerVerifiedAsync();
            output.WriteLine($"{context}: {attempts.Count} sent, {acknowledged.Count} answered 201 (all durable), {refused.Count} refused with 503, "
                + $"{cut.Count} cut at the connection (none charged); exit code {exitCode}");
        }
        Assert.Contains("Ledger stopped; every queued change was committed.", tally.Output);
    }
}
