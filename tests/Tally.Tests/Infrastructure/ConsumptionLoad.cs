using System.Collections.Concurrent;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Tally.Tests.Infrastructure;

/// <summary>One consumption a load client sent, and what came back: a status, or a failure of the connection.</summary>
public sealed record Attempt(string IdempotencyKey, HttpStatusCode? Status, string? ConsumptionId, string? Code, string? Failure)
{
    /// <summary>201 with an id: the server said the consumption is durable.</summary>
    public bool Acknowledged => Status == HttpStatusCode.Created && ConsumptionId is not null;
}

/// <summary>
/// Many clients, each with its own connection, sending one-credit consumptions with unique idempotency keys
/// as fast as answers come. A client stops at its first connection failure (the server is gone) or when
/// asked to; a request already sent is never cancelled, so each attempt ends answered or failed.
/// </summary>
public static class ConsumptionLoad
{
    /// <summary>A request the server does not answer in this time counts as failed; no healthy answer takes near it.</summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(60);

    public static async Task<IReadOnlyList<Attempt>> RunAsync(TallyApi tally, TestKey key, string keyPrefix, int clients, CancellationToken stop)
    {
        var attempts = new ConcurrentQueue<Attempt>();

        async Task RunClientAsync(int client)
        {
            using var http = tally.CreateClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1 });
            http.Timeout = RequestTimeout;
            http.DefaultRequestHeaders.TryAddWithoutValidation("Authorization", key.Bearer);
            for (var sequence = 0; !stop.IsCancellationRequested; sequence++)
            {
                var idempotencyKey = $"{keyPrefix}-{client}-{sequence}";
                var attempt = await SendAsync(http, idempotencyKey);
                attempts.Enqueue(attempt);
                if (attempt.Failure is not null) return;
            }
        }

        await Task.WhenAll(Enumerable.Range(0, clients).Select(client => Task.Run(() => RunClientAsync(client))));
        return attempts.ToList();
    }

    private static async Task<Attempt> SendAsync(HttpClient http, string idempotencyKey)
    {
        try
        {
            using var response = await http.PostAsJsonAsync("/v1/consumptions", new { credits = 1, idempotencyKey });
            var body = JsonNode.Parse(await response.Content.ReadAsStringAsync());
            return new Attempt(idempotencyKey, response.StatusCode, body?["id"]?.GetValue<string>(), body?["code"]?.GetValue<string>(), null);
        }
        catch (Exception exception) when (exception is HttpRequestException or IOException or TaskCanceledException or JsonException)
        {
            // A broken connection or a cut-off body: the client cannot know whether the server committed it.
            return new Attempt(idempotencyKey, null, null, null, exception.GetType().Name + ": " + exception.Message);
        }
    }

    /// <summary>Sends the same consumption again, as a client retrying after a failure would.</summary>
    public static async Task<Reply> ReplayAsync(TallyApi tally, TestKey key, string idempotencyKey) =>
        await tally.CallAsync(HttpMethod.Post, "/v1/consumptions", key.Bearer, new { credits = 1, idempotencyKey });

    /// <summary>Runs <paramref name="action"/> over <paramref name="items"/>, a few at a time.</summary>
    public static async Task<TResult[]> ForEachAsync<TItem, TResult>(IEnumerable<TItem> items, Func<TItem, Task<TResult>> action, int parallelism = 8)
    {
        using var gate = new SemaphoreSlim(parallelism);
        return await Task.WhenAll(items.Select(async item =>
        {
            await gate.WaitAsync();
            try { return await action(item); }
            finally { gate.Release(); }
        }));
    }
}
