using System.Net;
using System.Net.Sockets;

namespace Tally.Tests.Infrastructure;

/// <summary>
/// A TCP forwarder on a loopback port to another address: a network path a test can cut (every connection closed
/// and new ones refused, as when a database host goes away), hold (bytes stop flowing, as when the host freezes),
/// and restore.
/// </summary>
public sealed class TcpForwarder(int port, IPEndPoint target) : IAsyncDisposable
{
    private readonly List<TcpClient> connections = [];
    private volatile TaskCompletionSource flowing = Flowing();
    private int accepted;

    private static TaskCompletionSource Flowing()
    {
        var open = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        open.SetResult();
        return open;
    }

    /// <summary>Bytes stop flowing both ways, the connections staying open, until <see cref="Release"/>.</summary>
    public void Hold() => flowing = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Release() => flowing.TrySetResult();
    private TcpListener? listener;
    private Task? accepting;

    public int Port => port;

    /// <summary>Connections accepted so far, each forwarded to the target.</summary>
    public int Accepted => Volatile.Read(ref accepted);

    public static TcpForwarder Start(IPEndPoint target)
    {
        var free = new TcpListener(IPAddress.Loopback, 0);
        free.Start();
        var port = ((IPEndPoint)free.LocalEndpoint).Port;
        free.Stop();
        var forwarder = new TcpForwarder(port, target);
        forwarder.Restore();
        return forwarder;
    }

    /// <summary>Listens again on the same port.</summary>
    public void Restore()
    {
        listener = new TcpListener(IPAddress.Loopback, port);
        listener.Server.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.ReuseAddress, true);
        listener.Start();
        accepting = AcceptAsync(listener);
    }

    /// <summary>Closes every forwarded connection and stops listening: new connections are refused.</summary>
    public async Task CutAsync()
    {
        listener?.Stop();
        if (accepting is not null) await accepting;
        lock (connections)
        {
            foreach (var connection in connections) connection.Dispose();
            connections.Clear();
        }
    }

    private async Task AcceptAsync(TcpListener from)
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = await from.AcceptTcpClientAsync();
            }
            // Stopped by a cut: while waiting (SocketException, ObjectDisposedException) or between two accepts, while
            // the last accepted connection was being forwarded (InvalidOperationException, "Not listening").
            catch (Exception exception) when (exception is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            var upstream = new TcpClient();
            try
            {
                await upstream.ConnectAsync(target);
            }
            catch (SocketException)
            {
                client.Dispose();
                upstream.Dispose();
                continue;
            }
            lock (connections) connections.AddRange([client, upstream]);
            Interlocked.Increment(ref accepted);
            _ = PumpAsync(client, upstream);
            _ = PumpAsync(upstream, client);
        }
    }

    private async Task PumpAsync(TcpClient from, TcpClient to)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            var source = from.GetStream();
            var destination = to.GetStream();
            int read;
            while ((read = await source.ReadAsync(buffer)) > 0)
            {
                await flowing.Task;
                await destination.WriteAsync(buffer.AsMemory(0, read));
            }
        }
        catch (Exception exception) when (exception is IOException or ObjectDisposedException or SocketException or InvalidOperationException)
        {
            // The other side or the cut closed it.
        }
        finally
        {
            from.Dispose();
            to.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Release();
        await CutAsync();
    }
}
