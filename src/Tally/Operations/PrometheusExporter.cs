using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Tally.Operations;

/// <summary>
/// Collects the Tally meter's measurements with a MeterListener and renders them in the Prometheus text
/// format (version 0.0.4): counters as sums, histograms as fixed buckets, gauges observed at scrape time.
/// </summary>
public sealed class PrometheusExporter : IDisposable
{
    /// <summary>Distinct label sets per instrument; past this new ones are folded into one, so hostile routes cannot grow memory.</summary>
    private const int SeriesPerInstrumentMax = 1_000;

    private static readonly double[] BucketBounds = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000];

    private readonly MeterListener listener = new();
    private readonly ConcurrentDictionary<Instrument, ConcurrentDictionary<string, Series>> series = new();

    private sealed class Series
    {
        public double Sum;
        public readonly long[] Buckets = new long[BucketBounds.Length + 1];
        public double Last;
    }

    public PrometheusExporter()
    {
        listener.InstrumentPublished = (instrument, meterListener) =>
        {
            if (instrument.Meter.Name == TallyMetrics.MeterName) meterListener.EnableMeasurementEvents(instrument);
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Record(instrument, value, tags));
        listener.Start();
    }

    private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var perInstrument = series.GetOrAdd(instrument, _ => new ConcurrentDictionary<string, Series>());
        var labels = tags.Length == 2 ? CachedLabels(tags) : Labels(tags);
        // One lookup for the series that exist (every request after the first of its route and status).
        if (!perInstrument.TryGetValue(labels, out var entry))
        {
            if (perInstrument.Count >= SeriesPerInstrumentMax) labels = "{overflow=\"true\"}";
            entry = perInstrument.GetOrAdd(labels, _ => new Series());
        }
        // Without a lock: every request adds to the same series, and a lock there made the two request threads
        // wait on each other. Render may read a series between two of these steps, which a scrape tolerates.
        Volatile.Write(ref entry.Last, value);
        var sum = Volatile.Read(ref entry.Sum);
        while (true)
        {
            var seen = Interlocked.CompareExchange(ref entry.Sum, sum + value, sum);
            if (seen.Equals(sum)) break;
            sum = seen;
        }
        // A loop, not Array.FindIndex with a lambda: the lambda captured the value, a closure per measurement.
        var bucket = 0;
        while (bucket < BucketBounds.Length && !(value <= BucketBounds[bucket])) bucket++;
        Interlocked.Increment(ref entry.Buckets[bucket]);
    }

    public string Render()
    {
        listener.RecordObservableInstruments();
        var text = new StringBuilder();
        foreach (var (instrument, perInstrument) in series.OrderBy(pair => pair.Key.Name, StringComparer.Ordinal))
        {
            var type = instrument switch
            {
                Histogram<long> or Histogram<double> => "histogram",
                ObservableGauge<long> or ObservableGauge<double> => "gauge",
                _ => "counter",
            };
            text.Append("# HELP ").Append(instrument.Name).Append(' ').Append(instrument.Description).Append('\n');
            text.Append("# TYPE ").Append(instrument.Name).Append(' ').Append(type).Append('\n');
            foreach (var (labels, entry) in perInstrument.OrderBy(pair => pair.Key, StringComparer.Ordinal))
            {
                lock (entry) AppendSeries(text, instrument, type, labels, entry);
            }
        }
        return text.ToString();
    }

    private static void AppendSeries(StringBuilder text, Instrument instrument, string type, string labels, Series entry)
    {
        var name = instrument.Name;
        switch (type)
        {
            case "histogram":
                long cumulative = 0;
                for (var index = 0; index <= BucketBounds.Length; index++)
                {
                    cumulative += entry.Buckets[index];
                    var bound = index < BucketBounds.Length ? Number(BucketBounds[index]) : "+Inf";
                    text.Append(name).Append("_bucket").Append(WithLabel(labels, "le", bound)).Append(' ').Append(cumulative).Append('\n');
                }
                text.Append(name).Append("_sum").Append(labels).Append(' ').Append(Number(entry.Sum)).Append('\n');
                // The count is the +Inf bucket as read above, not the series' own count: a measurement recorded
                // between the two reads (recording takes no lock) would make them differ, which the format forbids.
                text.Append(name).Append("_count").Append(labels).Append(' ').Append(cumulative).Append('\n');
                break;
            case "gauge":
                text.Append(name).Append(labels).Append(' ').Append(Number(entry.Last)).Append('\n');
                break;
            default:
                // Observable counters report their running total; ordinary counters report increments to sum.
                var value = instrument.IsObservable ? entry.Last : entry.Sum;
                text.Append(name).Append(labels).Append(' ').Append(Number(value)).Append('\n');
                break;
        }
    }

    /// <summary>Label text by tag values, so that counting a request does not format strings each time.</summary>
    private readonly ConcurrentDictionary<(string, object?, string, object?), string> labelCache = new();

    private string CachedLabels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var key = (tags[0].Key, tags[0].Value, tags[1].Key, tags[1].Value);
        if (labelCache.TryGetValue(key, out var labels)) return labels;
        labels = Labels(tags);
        if (labelCache.Count < SeriesPerInstrumentMax * 4) labelCache[key] = labels;
        return labels;
    }

    private static string Labels(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (tags.Length == 0) return "";
        var pairs = new List<string>(tags.Length);
        foreach (var tag in tags) pairs.Add($"{tag.Key}=\"{Escape(Convert.ToString(tag.Value, CultureInfo.InvariantCulture) ?? "")}\"");
        pairs.Sort(StringComparer.Ordinal);
        return "{" + string.Join(",", pairs) + "}";
    }

    private static string WithLabel(string labels, string name, string value) =>
        labels.Length == 0 ? $"{{{name}=\"{value}\"}}" : labels[..^1] + $",{name}=\"{value}\"}}";

    private static string Escape(string value) => value.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n");

    private static string Number(double value) => value.ToString("R", CultureInfo.InvariantCulture);

    public void Dispose() => listener.Dispose();
}
