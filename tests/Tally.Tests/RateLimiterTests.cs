using System.Net;
using Microsoft.AspNetCore.Http;
using Tally.Hosting;

namespace Tally.Tests;

/// <summary>
/// The credential rate limiter on its own, with a clock moved by hand: the bucket's arithmetic and the bound on
/// how many buckets it keeps (OverloadTests covers the same limiter through the real server).
/// </summary>
public sealed class RateLimiterTests
{
    private const int RatePerSecond = 10;

    [Fact]
    public void ACredentialGetsItsBurstThenOnlyWhatTimeRefills()
    {
        var clock = new TickClock();
        var limiter = new CredentialRateLimiter(new TallyOptions { RateLimitPerSecond = RatePerSecond }, clock, EveryCredentialKnown);
        var request = Request("Bearer sk_one");

        var burst = Enumerable.Range(0, 100).Count(_ => limiter.TryTake(request));
        Assert.Equal(2 * RatePerSecond, burst);

        clock.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(RatePerSecond / 2, Enumerable.Range(0, 100).Count(_ => limiter.TryTake(request)));

        // Another credential has a bucket of its own.
        Assert.True(limiter.TryTake(Request("Bearer sk_two")));
        Assert.False(limiter.TryTake(request));

        // A bucket refills to its burst, never past it.
        clock.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(2 * RatePerSecond, Enumerable.Range(0, 100).Count(_ => limiter.TryTake(request)));
    }

    [Fact]
    public void OneKeyHasOneBucketWhicheverSpellingOrPublicPartItIsSentWith()
    {
        var clock = new TickClock();
        var limiter = new CredentialRateLimiter(new TallyOptions { RateLimitPerSecond = RatePerSecond }, clock, EveryCredentialKnown);
        string[] spellings =
        [
            "Bearer pk_one:sk_one", "Bearer sk_one", "sk_one", "bearer   sk_one ", "Bearer pk_other:sk_one", "  sk_one",
        ];

        var taken = Enumerable.Range(0, 100).Count(index => limiter.TryTake(Request(spellings[index % spellings.Length])));

        Assert.Equal(2 * RatePerSecond, taken);
        Assert.Equal(1, limiter.BucketCount);
        // Another secret, in the same spellings, is another key.
        Assert.True(limiter.TryTake(Request("Bearer pk_one:sk_two")));
        Assert.Equal(2, limiter.BucketCount);
    }

    [Fact]
    public void AFullTableDropsTheBucketsThatRefilledAndNeverGrowsWithNewCredentials()
    {
        var clock = new TickClock();
        var limiter = new CredentialRateLimiter(new TallyOptions { RateLimitPerSecond = RatePerSecond }, clock, EveryCredentialKnown);
        for (var index = 0; index < CredentialRateLimiter.BucketsMax; index++) Assert.True(limiter.TryTake(Request($"Bearer sk_{index}")));
        Assert.Equal(CredentialRateLimiter.BucketsMax, limiter.BucketCount);

        // Every bucket is in use (none has refilled yet): new credentials share their address's bucket.
        var address = IPAddress.Parse("192.0.2.7");
        var shared = Enumerable.Range(0, 100).Count(index => limiter.TryTake(Request($"Bearer sk_new_{index}", address)));
        Assert.Equal(2 * RatePerSecond, shared);
        Assert.Equal(CredentialRateLimiter.BucketsMax + 1, limiter.BucketCount);

        // A second later the credentials' buckets have refilled, which is the same as having none: the next new
        // credential finds them dropped and gets a bucket of its own. The address's bucket, emptied above, is
        // only half refilled and stays.
        clock.Advance(TimeSpan.FromSeconds(1));
        Assert.True(limiter.TryTake(Request("Bearer sk_after", address)));
        Assert.Equal(2, limiter.BucketCount);
    }

    [Theory]
    [InlineData("/healthz")]
    [InlineData("/ReadyZ")]
    [InlineData("/Metrics")]
    [InlineData("/metrics/")]
    public void ProbesAndScrapesAreNeverLimitedHoweverTheirPathIsSpelled(string path)
    {
        // Routing serves /Metrics and /healthz/ as /metrics and /healthz, so the exemption must cover them too.
        var limiter = new CredentialRateLimiter(new TallyOptions { RateLimitPerSecond = RatePerSecond }, new TickClock(), EveryCredentialKnown);
        var request = Request("Bearer sk_one");
        request.Request.Path = path;

        Assert.Equal(100, Enumerable.Range(0, 100).Count(_ => limiter.Allows(request)));
        request.Request.Path = "/v1/balance";
        Assert.Equal(2 * RatePerSecond, Enumerable.Range(0, 100).Count(_ => limiter.Allows(request)));
    }

    [Fact]
    public void CredentialsTheServerDoesNotKnowSpendTheirAddresssTokensNotABucketEach()
    {
        var clock = new TickClock();
        var limiter = new CredentialRateLimiter(new TallyOptions { RateLimitPerSecond = RatePerSecond }, clock,
            credential => credential.SequenceEqual("sk_known"));
        var address = IPAddress.Parse("192.0.2.9");

        // A new random key with every request: before, each got a fresh bucket, and none was ever refused.
        var unknown = Enumerable.Range(0, 100).Count(index => limiter.TryTake(Request($"Bearer sk_guess{index}", address)));
        Assert.Equal(2 * RatePerSecond, unknown);
        Assert.Equal(1, limiter.BucketCount);
        // A known key from the same address has its own bucket; another address has its own too.
        Assert.Equal(2 * RatePerSecond, Enumerable.Range(0, 100).Count(_ => limiter.TryTake(Request("Bearer sk_known", address))));
        Assert.True(limiter.TryTake(Request("Bearer sk_guess", IPAddress.Parse("192.0.2.10"))));
        Assert.Equal(3, limiter.BucketCount);
    }

    [Fact]
    public void ManyFirstRequestsOfOneCredentialAtOnceCountOneBucket()
    {
        var limiter = new CredentialRateLimiter(new TallyOptions { RateLimitPerSecond = 1_000_000 }, new TickClock(), EveryCredentialKnown);
        const int Credentials = 20_000;
        // Eight threads walk the same new credentials in the same order, so that first requests of one meet.
        var requests = Enumerable.Range(0, Credentials).Select(index => Request($"Bearer sk_{index}")).ToArray();
        using var start = new Barrier(8);
        var threads = Enumerable.Range(0, 8).Select(_ => new Thread(() =>
        {
            start.SignalAndWait();
            foreach (var request in requests) limiter.TryTake(request);
        })).ToList();
        threads.ForEach(thread => thread.Start());
        threads.ForEach(thread => thread.Join());

        Assert.Equal(Credentials, limiter.BucketCount);
    }

    private static bool EveryCredentialKnown(ReadOnlySpan<char> credential) => true;

    private static DefaultHttpContext Request(string authorization, IPAddress? address = null)
    {
        var context = new DefaultHttpContext();
        context.Request.Path = "/v1/balance";
        context.Request.Headers.Authorization = authorization;
        context.Connection.RemoteIpAddress = address ?? IPAddress.Loopback;
        return context;
    }

    /// <summary>A clock whose timestamps move only when the test says so.</summary>
    private sealed class TickClock : TimeProvider
    {
        private long ticks = TimeSpan.TicksPerDay;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;
        public override long GetTimestamp() => Interlocked.Read(ref ticks);
        public void Advance(TimeSpan by) => Interlocked.Add(ref ticks, by.Ticks);
    }
}
