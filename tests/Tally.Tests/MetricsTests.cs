using System.Globalization;
using System.Net;
using Tally.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Tally.Tests;

/// <summary>
/// `GET /metrics` of the real `tally` process (a process of its own, so that no other test's server adds to its
/// figures): the requests, consumptions and batches it served, and the embedded store's background work.
/// </summary>
public sealed class MetricsTests(TallyProcess tally, ITestOutputHelper output) : IClassFixture<TallyProcess>
{
    /// <summary>
    /// Enough batches for the journal's log to pass the 1,000 pages after which it is checkpointed: at least 600
    /// batches of at most five commands, and each commit wrote about 2.5 pages when measured (2,400 consumptions
    /// made 1,241 batches and three checkpoints).
    /// </summary>
    private const int Consumptions = 3_000;

    private const int Callers = 4;

    [Fact]
    public async Task MetricsCountEveryConsumptionServedAndShowTheTablesCaughtUpAndTheJournalCheckpointed()
    {
        var organization = await tally.CreateOrganizationAsync(creditsPerPeriod: Consumptions);
        var before = Parse(await MetricsAsync());
        var next = -1;
        await Task.WhenAll(Enumerable.Range(0, Callers).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) < Consumptions) (await tally.ConsumeAsync(organization.Key)).Expect(HttpStatusCode.Created);
        }));
        // Refused for lack of credits: counted under its own outcome and status.
        (await tally.ConsumeAsync(organization.Key)).ExpectProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        // A read of the tables waits until they hold every answered batch.
        (await tally.CallAsync(HttpMethod.Get, "/v1/usage", organization.Key.Bearer)).Expect(HttpStatusCode.OK);

        var after = Parse(await MetricsAsync());
        double Added(string series) => after.GetValueOrDefault(series) - before.GetValueOrDefault(series);
        Assert.Equal(Consumptions, Added("tally_http_requests_total{route=\"/v1/consumptions\",status=\"201\"}"));
        Assert.Equal(1, Added("tally_http_requests_total{route=\"/v1/consumptions\",status=\"402\"}"));
        Assert.Equal(Consumptions, Added("tally_consumptions_total{outcome=\"created\"}"));
        Assert.Equal(1, Added("tally_consumptions_total{outcome=\"insufficient_credits\"}"));
        // Every consumption went through a committed batch, and no batch held more than the callers sent at once.
        var batches = Added("tally_batch_size_count");
        Assert.InRange(Added("tally_batch_size_sum"), Consumptions + 1, double.MaxValue);
        Assert.InRange(batches, (Consumptions + 1.0) / (Callers + 1), Consumptions + 1);
        Assert.Equal(0, after["tally_sqlite_projector_lag_batches"]);
        Assert.InRange(after["tally_sqlite_checkpoints_total{log=\"journal\"}"], 1, double.MaxValue);
        Assert.Equal(0, after["tally_sqlite_failed_checkpoints_total{log=\"journal\"}"]);
        Assert.Equal(0, after["tally_sqlite_failed_checkpoints_total{log=\"tables\"}"]);
        Assert.True(after.ContainsKey("tally_sqlite_writer_checkpoints_total{log=\"tables\"}"), "no writer checkpoint series for the tables");
        output.WriteLine($"{Consumptions} consumptions in {batches} batches; journal checkpoints " +
            $"{after["tally_sqlite_checkpoints_total{log=\"journal\"}"]}, tables {after["tally_sqlite_checkpoints_total{log=\"tables\"}"]}");
        await tally.AssertLedgerVerifiedAsync();
    }

    private async Task<string> MetricsAsync()
    {
        var reply = (await tally.CallAsync(HttpMethod.Get, "/metrics", null)).Expect(HttpStatusCode.OK);
        Assert.StartsWith("text/plain", reply.ContentType);
        return reply.Text;
    }

    /// <summary>Each sample line of the Prometheus text format: "name{labels} value".</summary>
    private static Dictionary<string, double> Parse(string text)
    {
        var samples = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.StartsWith('#')) continue;
            var space = line.LastIndexOf(' ');
            samples[line[..space]] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
        }
        return samples;
    }
}
