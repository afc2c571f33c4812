# Sidekiq (Debian's ruby-sidekiq) with Redis (not durable), for bench/jobs-peers.sh. Required by
# `sidekiq -r` it defines the no-op job; run with ruby it enqueues N jobs in bulk (or one at a
# time at RATE per second) and waits until they have all run; prints jobs/s and pickup p50/p99.
#
#   REDIS_URL=redis://127.0.0.1:PORT/0 ruby bench/peers/sidekiq_peer.rb N [RATE]
require "sidekiq"

class Noop
  include Sidekiq::Worker
  sidekiq_options retry: false

  def perform(created)
    Sidekiq.redis { |r| r.rpush("pickups", Time.now.to_f - created) }
  end
end

if $PROGRAM_NAME == __FILE__
  jobs = Integer(ARGV[0])
  rate = ARGV[1] ? Float(ARGV[1]) : 0.0
  Sidekiq.redis { |r| r.del("pickups") }
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  if rate > 0
    jobs.times do |at|
      Noop.perform_async(Time.now.to_f)
      pause = started + (at + 1) / rate - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sleep(pause) if pause > 0
    end
  else
    (0...jobs).step(1000) do |at|
      n = [1000, jobs - at].min
      Sidekiq::Client.push_bulk("class" => Noop, "args" => Array.new(n) { [Time.now.to_f] })
    end
  end
  enqueued = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  sleep 0.02 while Sidekiq.redis { |r| r.llen("pickups") } < jobs
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  pickups = Sidekiq.redis { |r| r.lrange("pickups", 0, -1) }.map(&:to_f).sort
  at = ->(q) { pickups[((pickups.size - 1) * q).round] * 1000 }
  printf("jobs %d in %.2fs: %.0f jobs/s enqueued and completed (enqueue alone %.0f/s); pickup p50 %.1f ms, p99 %.1f ms over %d jobs\n",
         jobs, elapsed, jobs / elapsed, jobs / enqueued, at.(0.5), at.(0.99), pickups.size)
end
